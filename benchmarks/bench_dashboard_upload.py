"""Memory and speed of the anomaly page in a real browser: `streamlit run` driven by Chromium.

    python benchmarks/bench_dashboard_upload.py [--rows 1400000] [--format parquet|csv]
    python benchmarks/bench_dashboard_upload.py --events 2000000   # raw events instead
    python benchmarks/bench_dashboard_upload.py --fit              # also fit on the batch

Makes the file (the demo build's features, or its prepared events, resampled with fresh
visitorids), starts `streamlit run streamlit_app.py`, samples the server's RSS (children
included, psutil, every 50 ms) for the whole session, and in headless Debian Chromium: uploads
the file, waits for the results and both download buttons, switches to "a share of this batch",
moves the share slider five times (one key press each, timed to the end of the rerun), with
--fit switches to "a detector fitted on this batch", clicks both downloads (and, for raw events,
with the first flagged visitor's drill-down on screen, both cleaned-events downloads), removes the file from the uploader, closes the browser and samples the RSS for
--after-close seconds (Streamlit keeps a closed tab's session for server.disconnectedSessionTTL).
Prints: time to results, each slider latency, download times, the peak RSS of each step and of
the whole session, the RSS after the file was removed and after the browser closed.
Budget: results <= 15 s, slider <= 1 s, peak RSS <= 1 GB, memory returned on remove and close.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.base import schema  # noqa: E402
from core.store import artifacts as A  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MB = 2**20


def resample(table: pd.DataFrame, n: int, seed: int = 1) -> pd.DataFrame:
    """n rows drawn from table, visitorids renumbered per copy so they stay realistic."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(table), n)
    out = table.iloc[idx].reset_index(drop=True)
    out["visitorid"] = out["visitorid"].to_numpy() + (np.arange(n) // len(table)) * 10**7
    return out


def make_file(args: argparse.Namespace, folder: Path) -> Path:
    """The upload: features (unique visitorids) or raw events, as parquet or CSV."""
    if args.events:
        events = pd.read_parquet(A.default_dir() / schema.CLEAN_EVENTS)
        table = resample(events, args.events)
        table["event"] = table["event"].astype(str)
        name = f"events_{args.events}"
    else:
        feats = pd.read_parquet(A.default_dir() / schema.USER_FEATURES_FILE)
        table = resample(feats, args.rows)
        table["visitorid"] = np.arange(len(table))  # one row per visitor
        name = f"features_{args.rows}"
    path = folder / f"{name}.{args.format}"
    if args.format == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


class RssSampler(threading.Thread):
    """Peak RSS of a process and its children, sampled in the background, overall and per step."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        """Sample pid (and its children) every interval seconds."""
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak, self.step_peak, self.stop = psutil.Process(pid), interval, 0, 0, False

    def now(self) -> int:
        """Current RSS in bytes, children included."""
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def step(self) -> int:
        """The peak since the last call (the step just done), then start a new step."""
        peak, self.step_peak = max(self.step_peak, self.now()), 0
        return peak

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop:
            rss = self.now()
            self.peak, self.step_peak = max(self.peak, rss), max(self.step_peak, rss)
            time.sleep(self.interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settle(pg) -> float:
    """Seconds until the script run an interaction started is over."""
    t0 = time.perf_counter()
    try:
        pg.locator('[data-testid="stApp"][data-test-script-state="running"]').wait_for(timeout=1_500)
    except Exception:  # the run may already be over
        pass
    pg.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=300_000)
    return time.perf_counter() - t0


def settle_fully(pg, quiet: float = 1.0) -> None:
    """Wait until no script run has started for `quiet` seconds (a run may start the next one)."""
    while True:
        settle(pg)
        time.sleep(quiet)
        if pg.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').count():
            return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_400_000)
    ap.add_argument("--events", type=int, default=0, help="upload this many raw events instead of features")
    ap.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    ap.add_argument("--fit", action="store_true", help="also switch to 'a detector fitted on this batch'")
    ap.add_argument("--after-close", type=float, default=60.0, help="seconds to sample after the browser closed")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="bench_upload_"))
    path = make_file(args, folder)
    print(f"file: {path.name}, {path.stat().st_size / MB:.1f} MB")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        stdout=open(folder / "streamlit.log", "w"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    url = f"http://127.0.0.1:{port}"
    sampler = RssSampler(server.pid)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        sampler.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            pg = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True).new_page()
            pg.set_default_timeout(300_000)
            pg.goto(f"{url}/anomaly")
            pg.locator("h1").first.wait_for()
            settle(pg)
            print(f"server RSS before upload: {sampler.now() / MB:.0f} MB")
            sampler.step()
            t0 = time.perf_counter()
            pg.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))
            pg.get_by_role("button", name="Scored rows as parquet").wait_for()
            settle(pg)
            print(f"time to results and downloads ready: {time.perf_counter() - t0:.1f} s")
            print(
                f"server RSS after scoring: {sampler.now() / MB:.0f} MB (upload and scoring peak {sampler.step() / MB:.0f} MB)"
            )
            pg.get_by_text("a share of this batch").click()
            print(f"switch to share mode: {settle(pg):.2f} s")
            flagged = (
                pg.locator('[data-testid="stMetric"]')
                .filter(has_text="Flagged")
                .locator('[data-testid="stMetricValue"]')
            )
            for i in range(5):
                thumb = pg.locator('[data-testid="stSlider"] input[type="range"]').first
                thumb.focus()
                before = flagged.inner_text()
                pg.evaluate("window.__ran = false")
                t1 = time.perf_counter()
                thumb.press("ArrowRight")
                # latency = until the new flag count is on screen (not a fixed wait for the run state),
                # or until the run is over when tied scores leave the count as it was
                pg.wait_for_function(
                    "b => { const app = document.querySelector('[data-testid=stApp]');"
                    " if (app.dataset.testScriptState === 'running') window.__ran = true;"
                    " const e = [...document.querySelectorAll('[data-testid=stMetric]')].find(m => "
                    "m.innerText.includes('Flagged')); return (e && !e.innerText.includes(b))"
                    " || (window.__ran && app.dataset.testScriptState === 'notRunning'); }",
                    arg=before,
                )
                latency = time.perf_counter() - t1
                settle(pg)
                print(f"slider move {i + 1}: {latency:.2f} s to the new flag count ({flagged.inner_text()})")
            print(f"server RSS after the slider moves: {sampler.now() / MB:.0f} MB (peak {sampler.step() / MB:.0f} MB)")
            if args.fit:
                t1 = time.perf_counter()
                pg.get_by_text("a detector fitted on this batch").click()
                pg.get_by_text("scorable users of this batch (seed").wait_for()
                settle_fully(pg)
                print(
                    f"fit on this batch: {time.perf_counter() - t1:.1f} s, server RSS {sampler.now() / MB:.0f} MB "
                    f"(peak {sampler.step() / MB:.0f} MB)"
                )
            buttons = ["Scored rows as CSV", "Scored rows as parquet"]
            if args.events:  # the drill-down of the first flagged visitor is on screen already
                assert pg.get_by_text("Evidence for one flagged visitor").count() == 1
                buttons += ["Cleaned events as CSV", "Cleaned events as parquet"]
            for label in buttons:
                t1 = time.perf_counter()
                with pg.expect_download() as info:
                    pg.get_by_role("button", name=label).click()
                saved = folder / info.value.suggested_filename
                info.value.save_as(saved)
                print(
                    f"download {label!r}: {time.perf_counter() - t1:.1f} s, {saved.stat().st_size / MB:.0f} MB, "
                    f"server RSS {sampler.now() / MB:.0f} MB (peak {sampler.step() / MB:.0f} MB)"
                )
                saved.unlink()
            assert pg.locator('[data-testid="stException"]').count() == 0
            print(f"server peak RSS, whole session: {sampler.peak / MB:.0f} MB")

            # The same rows under another name replace the file: the old table must go first.
            other = folder / f"{path.stem}_again{path.suffix}"
            os.link(path, other)
            t1 = time.perf_counter()
            pg.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(other))
            pg.get_by_text(other.name, exact=True).wait_for()
            settle_fully(pg)
            print(
                f"file replaced: results in {time.perf_counter() - t1:.1f} s, server RSS {sampler.now() / MB:.0f} MB "
                f"(peak {sampler.step() / MB:.0f} MB)"
            )
            pg.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
            pg.get_by_text("Upload a features file or use the demo features to begin.").wait_for()
            settle_fully(pg)
            time.sleep(5)
            print(f"server RSS 5 s after the file was removed: {sampler.now() / MB:.0f} MB")
            pg.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))
            pg.get_by_role("button", name="Scored rows as parquet").wait_for()
            settle_fully(pg)
            print(
                f"uploaded again, then the browser closes with the file in place: server RSS {sampler.now() / MB:.0f} MB"
            )
            assert pg.locator('[data-testid="stException"]').count() == 0
            browser.close()
        closed = time.perf_counter()
        while (waited := time.perf_counter() - closed) < args.after_close:
            time.sleep(min(15.0, args.after_close - waited))
            print(
                f"server RSS {time.perf_counter() - closed:.0f} s after the browser closed: {sampler.now() / MB:.0f} MB"
            )
        print(f"server peak RSS, whole run: {sampler.peak / MB:.0f} MB")
    finally:
        sampler.stop = True
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
