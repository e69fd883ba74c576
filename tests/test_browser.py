"""The dashboard in a real browser: `streamlit run` + headless Debian Chromium via Playwright.

First, on a fresh server (Streamlit still in its legacy pages/ mode), opens a deep link and checks
the entry point ran anyway (sidebar status, navigation, the right page). Then opens every page,
checks no exception is shown, uploads a features file through the real file_uploader, moves the
share slider with the keyboard, downloads the scored CSV and checks its rows, and saves
whole-page screenshots of every page in its main states, at 1440 px and at 390 px (a phone),
under test-output/screenshots/. Every request the browser makes is recorded; a request to any
host but the app's fails the module.
Skipped outside CI when /usr/bin/chromium is missing; with CI=true it fails instead.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from conftest import skip_or_fail

from core.base import schema
from core.store import artifacts as A
from core.userfiles.report import svg_renderer_available

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PAGES = {"overview": "", "ranking": "ranking", "anomaly": "anomaly", "cleaning_kpis": "cleaning_kpis"}
TITLES = {
    "overview": "E-commerce recommendation analytics",
    "ranking": "Next-category ranking",
    "anomaly": "Anomalous users",
    "cleaning_kpis": "Cleaning KPIs",
}
NAV_LINKS = ["Overview", "Next-category ranking", "Anomalous users", "Cleaning KPIs"]
# The page links: in the top bar on a wide screen, in the sidebar on a phone.
NAV = '[data-testid="stTopNavLink"], [data-testid="stSidebarNav"] a'
LEGACY_NAMES = ["streamlit app", "cleaning kpis"]  # how Streamlit's legacy mode names the files


@pytest.fixture(scope="module")
def browser_artifact_dir(built_artifact_dir) -> Path:
    return built_artifact_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(artifact_dir: Path, log_path: Path):
    """A fresh `streamlit run streamlit_app.py` on a free local port, healthy when yielded."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    port = _free_port()
    log = log_path.open("w")
    env = dict(os.environ, **{A.ARTIFACT_DIR_ENV: str(artifact_dir)})
    proc = subprocess.Popen(
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
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def dashboard_url(browser_artifact_dir, tmp_path_factory):
    """One server for this module; no page is opened before the first test's deep link."""
    with streamlit_server(browser_artifact_dir, tmp_path_factory.mktemp("streamlit") / "streamlit.log") as url:
        yield url


# Every request of the module's browser: the app's own (any 127.0.0.1 port: the fresh-server test
# starts a second app) or a local document (a downloaded report, a component's srcdoc).
REQUESTS: list[str] = []
LOCAL = re.compile(r"^(https?://127\.0\.0\.1:\d+/|file://|data:|blob:|about:)")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (Debian's binary; Playwright never downloads a browser); at the end,
    fails when any request went to another host (fonts, icons, CDNs: the app must work offline)."""
    try:
        from playwright import sync_api
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -r requirements-dev.txt)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    REQUESTS.clear()
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    foreign = sorted({url for url in REQUESTS if not LOCAL.match(url)})
    assert REQUESTS and not foreign, f"requests left the machine: {foreign}"


def new_page(browser, width: int, height: int = 900):
    """A page of its own context, this wide, whose every request is recorded."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.on("request", lambda req: REQUESTS.append(req.url))
    return pg


@pytest.fixture(scope="module")
def page(browser, dashboard_url):
    """The 1440-px page most tests share."""
    pg = new_page(browser, 1440)
    yield pg
    pg.context.close()


@pytest.fixture(scope="module")
def phone(browser, dashboard_url):
    """A 390-px page: an iPhone-sized screen."""
    pg = new_page(browser, 390, 844)
    yield pg
    pg.context.close()


def settle(pg) -> None:
    """Wait for the script run an interaction started (if any) to finish."""
    app = pg.locator('[data-testid="stApp"]')
    try:
        app.and_(pg.locator('[data-test-script-state="running"]')).wait_for(timeout=1_500)
    except Exception:  # the run may already be over, or never needed
        pass
    pg.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=90_000)
    pg.wait_for_timeout(300)  # let charts draw


def shot(pg, name: str) -> None:
    """A screenshot of the whole page at the page's width: Streamlit scrolls inside its main
    container, so the window is made as tall as the page for the shot, then set back."""
    size = pg.viewport_size
    height = pg.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer], body')]"
        ".map(e => e.scrollHeight))"
    )
    pg.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 12_000))})
    pg.wait_for_timeout(800)  # charts re-measure their container
    # Elements still being laid out show as grey skeletons: a shot of those says nothing.
    pg.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]')", timeout=30_000)
    pg.screenshot(path=str(SHOTS / name), full_page=True)
    pg.set_viewport_size(size)


def open_page(pg, base: str, name: str) -> None:
    pg.goto(f"{base}/{PAGES[name]}")
    pg.locator("h1").first.wait_for()
    settle(pg)


def assert_no_exception(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, pg.locator(
        '[data-testid="stException"]'
    ).first.inner_text()


def assert_entry_point_ran(pg, name: str) -> None:
    """The requested page, inside streamlit_app.py: its title, URL, sidebar status and navigation."""
    assert_no_exception(pg)
    assert pg.locator("h1").first.inner_text().strip() == TITLES[name]
    assert pg.url.rstrip("/").endswith(PAGES[name]) if PAGES[name] else pg.url.rstrip("/").count("/") == 2
    assert pg.locator('[data-testid="stSidebar"]').get_by_text("Manifest check passed").is_visible()
    nav = pg.locator(NAV)  # in the top bar at 1440 px
    assert [t.strip().splitlines()[-1] for t in nav.all_inner_texts()] == NAV_LINKS  # not the legacy list
    assert pg.get_by_text("Page not found").count() == 0


# The first test of the module, on a fresh server: Streamlit is still in its legacy pages/ mode,
# which runs a deep link as the bare page script; the page's guard must hand over to the entry point.
def test_deep_link_first_on_a_fresh_server_runs_the_entry_point(page, dashboard_url):
    open_page(page, dashboard_url, "anomaly")
    assert_entry_point_ran(page, "anomaly")
    assert page.get_by_text("Upload a features file or use the demo features to begin.").is_visible()
    shot(page, "deep_link_first.png")
    shot(page, "anomaly_start.png")


def test_home_first_on_a_fresh_server(browser_artifact_dir, page, tmp_path):
    with streamlit_server(browser_artifact_dir, tmp_path / "streamlit.log") as url:
        page.goto(f"{url}/")
        while not page.locator("h1").count():  # until the page is drawn: never the legacy file list
            names = page.locator('[data-testid="stSidebarNav"]').all_inner_texts()
            assert not any(n in t.lower() for t in names for n in LEGACY_NAMES), names
            page.wait_for_timeout(50)
        settle(page)
        assert_entry_point_ran(page, "overview")
        page.get_by_role("link", name="Cleaning KPIs").click()
        page.locator("h1").get_by_text(TITLES["cleaning_kpis"]).wait_for()
        settle(page)
        assert_entry_point_ran(page, "cleaning_kpis")


@pytest.mark.parametrize("name", ["ranking", "overview", "cleaning_kpis"])
def test_page_renders_without_exception(page, dashboard_url, name):
    open_page(page, dashboard_url, name)
    assert_entry_point_ran(page, name)
    if name != "ranking":
        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 1
    shot(page, f"{name}.png")


def test_cleaning_report_download_is_one_html_file(page, dashboard_url, tmp_path):
    open_page(page, dashboard_url, "cleaning_kpis")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download this page as an HTML report").click()
    saved = tmp_path / "report.html"
    info.value.save_as(saved)
    html = saved.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Ranking before and after cleaning" in html
    if svg_renderer_available():  # pinned in requirements.txt: a self-contained report
        assert "<svg" in html and "vegaEmbed(" not in html and "cdn.jsdelivr.net" not in html
    else:
        assert "vegaEmbed(" in html
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS.parent / "cleaning_kpis_report.html").write_text(html)
    page.goto(saved.as_uri())
    shot(page, "cleaning_kpis_report.png")


def test_ranking_sampler_in_the_browser(page, dashboard_url):
    open_page(page, dashboard_url, "ranking")
    page.get_by_role("button", name="Sample a visitor").click()
    settle(page)
    assert_no_exception(page)
    page.get_by_text(re.compile(r"(Hit|Miss): the actual next category")).first.wait_for()
    shot(page, "ranking_sampled.png")


def test_upload_slider_and_scored_csv_download(page, dashboard_url, browser_artifact_dir, tmp_path):
    features = pd.read_parquet(browser_artifact_dir / schema.USER_FEATURES_FILE).head(3_000)
    upload = tmp_path / "my_features.csv"
    features.to_csv(upload, index=False)

    open_page(page, dashboard_url, "anomaly")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(upload))
    page.get_by_text("Flagged users, most anomalous first").wait_for()
    settle(page)
    assert_no_exception(page)

    page.get_by_text("a share of this batch").click()
    settle(page)
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first  # the thumb's own input
    before = int(thumb.input_value())
    thumb.focus()
    for _ in range(6):
        thumb.press("ArrowRight")
    settle(page)
    after = int(page.locator('[data-testid="stSlider"] input[type="range"]').first.input_value())
    assert after == min(before + 6, 20)
    flagged = (
        page.locator('[data-testid="stMetric"]').filter(has_text="Flagged").locator('[data-testid="stMetricValue"]')
    )
    n_flagged = int(flagged.inner_text().replace(",", ""))
    assert abs(n_flagged - after / 100 * len(features)) <= 0.01 * len(features) + 2
    assert_no_exception(page)
    shot(page, "anomaly_scored_share_mode.png")

    with page.expect_download() as info:
        page.get_by_role("button", name="Scored rows as CSV").click()
    saved = tmp_path / "scored.csv"
    info.value.save_as(saved)
    scored = pd.read_csv(saved, float_precision="round_trip")
    assert len(scored) == len(features)
    pd.testing.assert_frame_equal(scored[features.columns], features, check_dtype=False)
    assert int(scored["is_anomaly"].sum()) == n_flagged
    assert set(scored["detector"]) == {"isolation_forest"} and set(scored["mode"]) == {f"top {after}% of this batch"}

    # removing the file releases the table (and the served download) and the page starts over
    page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
    page.get_by_text("Upload a features file or use the demo features to begin.").wait_for()
    settle(page)
    assert_no_exception(page)


def test_raw_events_upload_is_scored(page, dashboard_url, browser_artifact_dir, tmp_path):
    events = pd.read_parquet(browser_artifact_dir / schema.CLEAN_EVENTS).head(20_000).drop(columns="categoryid")
    upload = tmp_path / "raw_events.csv"
    events.to_csv(upload, index=False)
    open_page(page, dashboard_url, "anomaly")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(upload))
    page.get_by_text("Flagged users, most anomalous first").wait_for()
    settle(page)
    assert_no_exception(page)
    assert page.get_by_text("raw events of").first.is_visible()
    rows = page.locator('[data-testid="stMetric"]').filter(has_text="Rows").locator('[data-testid="stMetricValue"]')
    assert int(rows.inner_text().replace(",", "")) == events["visitorid"].nunique()
    shot(page, "anomaly_raw_events.png")


def test_hostile_file_is_shown_as_plain_text_and_fetches_nothing(page, dashboard_url, browser_artifact_dir, tmp_path):
    features = pd.read_parquet(browser_artifact_dir / schema.USER_FEATURES_FILE).head(200)
    probe = f"{dashboard_url}/probe-image.png"
    features["![x](" + probe + ")"] = "<img src=" + probe + ">"
    features.loc[3, "night_share"] = 1.5
    upload = tmp_path / "**bold** `name` <b>x.csv"
    features.to_csv(upload, index=False)
    fetched: list[str] = []
    page.on("request", lambda req: fetched.append(req.url) if "probe-image" in req.url else None)
    open_page(page, dashboard_url, "anomaly")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(upload))
    page.get_by_text("Rows with problems").wait_for()
    settle(page)
    assert_no_exception(page)
    page.wait_for_timeout(1_000)
    assert fetched == [] and page.locator("img[src*='probe-image']").count() == 0
    assert page.get_by_text(f"![x]({probe})").first.is_visible()  # the column name, as typed
    assert page.get_by_text("night_share = 1.5").first.is_visible()
    assert page.get_by_text("line 5").first.is_visible()
    shot(page, "anomaly_hostile_names.png")

    gz = tmp_path / "features.csv"
    gz.write_bytes(gzip.compress(features.to_csv(index=False).encode()))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(gz))
    page.get_by_text("is named .csv but is gzip-compressed").wait_for()
    settle(page)
    assert_no_exception(page)
    shot(page, "anomaly_gzip_named_csv.png")


def open_tab(pg, name: str) -> None:
    """Click one of the page's tabs and wait for its charts."""
    pg.get_by_role("tab", name=name).click()
    pg.wait_for_timeout(800)


def use_demo_features(pg) -> None:
    """Score the build's demo features on the anomaly page (the frozen operating point)."""
    pg.get_by_role("button", name="Use the demo features").click()
    pg.get_by_text("Flagged users, most anomalous first").wait_for(timeout=180_000)
    settle(pg)
    assert_no_exception(pg)


def fits_the_width(pg) -> None:
    """Nothing drawn wider than the window: every chart, and the page itself."""
    width = pg.viewport_size["width"]
    wide = pg.evaluate(
        "w => [...document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg')]"
        ".map(e => e.getBoundingClientRect()).filter(r => r.width > 0 && r.right > w + 1).length",
        width,
    )
    assert wide == 0, f"{wide} chart(s) wider than {width} px"
    main = pg.locator('[data-testid="stMain"]')
    assert main.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the page scrolls sideways"


def test_every_page_in_its_main_states_at_1440_px(page, dashboard_url):
    open_page(page, dashboard_url, "cleaning_kpis")
    shot(page, "cleaning_kpis_1440_ranking_tab.png")
    open_tab(page, "Detector and its cost")
    assert page.get_by_text("What cleaning removes (").first.is_visible()
    fits_the_width(page)
    shot(page, "cleaning_kpis_1440_detector_tab.png")
    open_page(page, dashboard_url, "overview")
    fits_the_width(page)
    shot(page, "overview_1440.png")
    open_page(page, dashboard_url, "anomaly")
    use_demo_features(page)
    assert page.get_by_text("Zoom: the").first.is_visible() or page.locator("canvas").count() >= 2
    fits_the_width(page)
    shot(page, "anomaly_1440_demo_frozen.png")


def test_every_page_on_a_phone(phone, dashboard_url):
    """390 px: the sidebar starts closed and closes again after a page is chosen in it, no chart
    is wider than the screen, and every page in its main states is shot."""
    open_page(phone, dashboard_url, "overview")
    assert_no_exception(phone)
    sidebar = phone.locator('[data-testid="stSidebar"]')
    assert sidebar.get_attribute("data-collapsed") == "true"
    fits_the_width(phone)
    shot(phone, "overview_390.png")

    phone.locator('[data-testid="stExpandSidebarButton"]').click()
    phone.wait_for_timeout(500)
    assert sidebar.get_attribute("data-collapsed") == "false"
    shot(phone, "sidebar_open_390.png")
    phone.locator(NAV).filter(has_text="Cleaning KPIs").click()
    phone.locator("h1").get_by_text(TITLES["cleaning_kpis"]).wait_for()
    settle(phone)
    phone.wait_for_function("() => document.querySelector('[data-testid=stSidebar]').dataset.collapsed === 'true'")
    assert_no_exception(phone)
    fits_the_width(phone)
    shot(phone, "cleaning_kpis_390_ranking_tab.png")
    open_tab(phone, "Detector and its cost")
    fits_the_width(phone)
    shot(phone, "cleaning_kpis_390_detector_tab.png")

    open_page(phone, dashboard_url, "ranking")
    assert_no_exception(phone)
    fits_the_width(phone)
    shot(phone, "ranking_390.png")

    open_page(phone, dashboard_url, "anomaly")
    shot(phone, "anomaly_390_start.png")
    use_demo_features(phone)
    fits_the_width(phone)
    shot(phone, "anomaly_390_demo_frozen.png")
    phone.get_by_text("a share of this batch").click()
    settle(phone)
    assert_no_exception(phone)
    shot(phone, "anomaly_390_share_mode.png")
