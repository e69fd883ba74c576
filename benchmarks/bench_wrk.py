"""Throughput of `python -m api` under wrk, and /rank while slow-body clients hold connections.

    python benchmarks/bench_wrk.py                     # 64 connections, 20 s per endpoint
    python benchmarks/bench_wrk.py --duration 5        # shorter

Self-contained: starts `python -m api` (one worker per core unless --workers) on a free port,
runs wrk (the Debian package) against /rank with examples/rank_request.json and /anomaly with
examples/anomaly_request.json, prints successful requests/s, p99 latency, the share of
non-2xx answers and the server's CPU time per answer (all workers; a busy machine inflates it far
less than the wall-clock figures) for each, then opens 8 connections that send a body one byte every 2 to 3 s and
prints how long /rank takes meanwhile and when the slow ones got their 408 or were closed.
Stops the server at the end. The targets of issue 20 are printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.schemas import EXAMPLES_DIR  # noqa: E402
from api.server import default_workers  # noqa: E402
from tests.test_api_server import running_server  # noqa: E402  (the same server start-up)

TARGETS = {"/rank": 400.0, "/anomaly": 250.0}  # successful requests/s
P99_TARGET_MS = 250.0
NON_2XX_TARGET = 0.01
SLOW_CLIENTS = 8

# wrk's Lua: POST the body, then print the summary as one JSON line wrk's own text cannot give.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def server_cpu_s(port: int) -> float:
    """CPU seconds used so far by the `python -m api` process on ``port`` and its workers (/proc).

    A figure a busy machine inflates far less than wall-clock throughput: CPU per answer tells
    what two idle cores would serve.
    """
    parents: dict[int, int] = {}
    root = None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # a process that ended while being read
            continue
        parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if b"api" in args and str(port).encode() in args:
            root = int(proc.name)
    tree = {root}
    while True:  # the workers, and anything they started
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        if not more:
            break
        tree |= more
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in tree:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (each worker has its own: ``api.server``)."""
    out = subprocess.run(["ss", "-ltnH", f"( sport = :{port} )"], capture_output=True, text=True).stdout
    return len(out.splitlines())


def wait_for_workers(port: int, workers: int, timeout_s: float = 120.0) -> int:
    """Wait until every worker listens (a worker still loading its models takes no connection,
    and wrk's 64 connections, opened at once, would all go to the ready ones); the count seen."""
    deadline = time.monotonic() + timeout_s
    while (n := listening_sockets(port)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return n


def run_wrk(url: str, path: str, body_file: Path, connections: int, duration: float, threads: int) -> dict[str, Any]:
    """One wrk run; its JSON summary plus the derived figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration:g}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url + path,
            ],
            env={**os.environ, "BENCH_BODY": str(body_file)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    seconds = summary["duration_us"] / 1e6
    failed = summary["non_2xx"] + summary["read"] + summary["write"] + summary["timeout"]
    ok = summary["requests"] - summary["non_2xx"]
    summary["ok_per_s"] = ok / seconds
    summary["non_2xx_share"] = failed / max(summary["requests"], 1)
    summary["p99_ms"] = summary["p99_us"] / 1000
    summary["p50_ms"] = summary["p50_us"] / 1000
    return summary


def slow_body_scenario(url: str, rank_body: bytes, hold_s: float = 12.0) -> dict[str, Any]:
    """8 connections send a body a byte every 2-3 s; /rank meanwhile; when each slow one ended."""
    host, port = url.removeprefix("http://").split(":")
    ended: list[float] = []
    answers: list[bytes] = []
    start = time.monotonic()

    def slow_client(k: int) -> None:
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(
                b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            sock.settimeout(2.0 + (k % 2))  # a byte every 2 or 3 s while the server keeps it open
            data = b""
            while time.monotonic() - start < 60:
                try:
                    chunk = sock.recv(65_536)
                    if not chunk:
                        break
                    data += chunk
                except TimeoutError:
                    try:
                        sock.sendall(b" ")
                    except OSError:
                        break
                except OSError:
                    break
            ended.append(time.monotonic() - start)
            answers.append(data)

    threads = [threading.Thread(target=slow_client, args=(k,), daemon=True) for k in range(SLOW_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rank_s: list[float] = []
    statuses: list[int] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() - start < hold_s:
            t0 = time.monotonic()
            r = client.post("/rank", content=rank_body, headers={"content-type": "application/json"})
            rank_s.append(time.monotonic() - t0)
            statuses.append(r.status_code)
            time.sleep(0.2)
    for t in threads:
        t.join(timeout=60)
    codes = sorted({a.split(b" ", 2)[1].decode() if a else "closed" for a in answers})
    return {
        "rank_max_s": max(rank_s),
        "rank_statuses": sorted(set(statuses)),
        "slow_ended_max_s": max(ended),
        "slow_answers": codes,
    }


def main() -> None:
    """Start the server, run every scenario, print the figures, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of wrk per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=default_workers(), help="API worker processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    bodies = {"/rank": EXAMPLES_DIR / "rank_request.json", "/anomaly": EXAMPLES_DIR / "anomaly_request.json"}
    print(f"load average before: {load_average()} (1, 5, 15 min); {os.cpu_count()} cores")
    with running_server(workers=args.workers) as url:
        port = int(url.rsplit(":", 1)[1])
        if shutil.which("ss") is not None:
            print(f"workers listening: {wait_for_workers(port, args.workers)} of {args.workers}")
        with httpx.Client(base_url=url, timeout=30) as client:  # warm both routes in every worker
            for _ in range(20 * args.workers):
                for path, body in bodies.items():
                    client.post(path, content=body.read_bytes(), headers={"content-type": "application/json"})
        print(
            f"python -m api --workers {args.workers}; wrk {args.connections} connections, {args.duration:g} s, {args.threads} threads"
        )
        print(
            f"{'endpoint':<10} {'requests':>9} {'ok/s':>8} {'target':>7} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} {'CPU ms/answer':>13}  load avg"
        )
        for path, body in bodies.items():
            cpu0 = server_cpu_s(port)
            s = run_wrk(url, path, body, args.connections, args.duration, args.threads)
            cpu_ms = (server_cpu_s(port) - cpu0) * 1000 / max(s["requests"], 1)
            verdict = (
                "ok"
                if s["ok_per_s"] >= TARGETS[path]
                and s["p99_ms"] <= P99_TARGET_MS
                and s["non_2xx_share"] <= NON_2XX_TARGET
                else "MISSED"
            )
            print(
                f"{path:<10} {s['requests']:>9} {s['ok_per_s']:>8.1f} {TARGETS[path]:>7.0f} {s['p50_ms']:>7.1f} "
                f"{s['p99_ms']:>7.1f} {s['non_2xx_share']:>8.2%} {cpu_ms:>13.2f}  {load_average()}  {verdict}"
            )
        slow = slow_body_scenario(url, bodies["/rank"].read_bytes())
        verdict = (
            "ok"
            if slow["rank_max_s"] <= 1.0 and slow["rank_statuses"] == [200] and slow["slow_ended_max_s"] <= 15.0
            else "MISSED"
        )
        print(
            f"slow bodies ({SLOW_CLIENTS} clients, a byte every 2-3 s): /rank answered {slow['rank_statuses']} in at most "
            f"{slow['rank_max_s']:.3f} s (target 1 s); the slow ones got {slow['slow_answers']} after at most "
            f"{slow['slow_ended_max_s']:.1f} s (target 15 s)  {load_average()}  {verdict}"
        )


if __name__ == "__main__":
    main()
