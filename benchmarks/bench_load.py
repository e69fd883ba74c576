"""Load on a real uvicorn: 64 concurrent clients per scenario; errors, 503s, latency and RSS.

    python benchmarks/bench_load.py                 # 30 s per scenario
    python benchmarks/bench_load.py --duration 5    # a short run (e.g. in CI)

The server is started exactly as the tests start it (``python -m api``, one worker) on 127.0.0.1. Scenarios: /rank with the example visitor, /anomaly with 5 users and
/anomaly with 10,000 users. A 503 with Retry-After is the server refusing work it has no room
for, counted apart; any other non-200 answer or transport error is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.schemas import EXAMPLES_DIR, MAX_USERS  # noqa: E402
from tests.test_api_server import running_server  # noqa: E402  (the same server start-up)

CLIENTS = 64
REQUEST_TIMEOUT_S = 120.0


def bodies() -> dict[str, bytes]:
    """The JSON body of each scenario, encoded once."""
    rank = json.loads((EXAMPLES_DIR / "rank_request.json").read_text())
    users = json.loads((EXAMPLES_DIR / "anomaly_request.json").read_text())["users"]
    many = [dict(users[i % len(users)], visitorid=i) for i in range(MAX_USERS)]
    return {
        "/rank": json.dumps(rank).encode(),
        "/anomaly (5 users)": json.dumps({"users": users[:5]}).encode(),
        "/anomaly (10,000 users)": json.dumps({"users": many}).encode(),
    }


def server_rss_mb(port: int) -> float:
    """RSS of the `python -m api` process started on ``port`` (from /proc), in MB."""
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if b"api" in args and str(port).encode() in args:  # python -m api ... --port PORT
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:  # a process that ended while being read
            continue
    return float("nan")


async def client(http: httpx.AsyncClient, path: str, body: bytes, until: float, out: dict[str, Any]) -> None:
    """One client: request after request until the deadline; 503s back off for Retry-After."""
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            r = await http.post(path, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            out["errors"].append(type(exc).__name__)
            continue
        if r.status_code == 200:
            out["latency"].append(time.monotonic() - start)
        elif r.status_code == 503 and r.headers.get("retry-after"):
            out["busy"] += 1
            await asyncio.sleep(min(float(r.headers["retry-after"]), max(0.0, until - time.monotonic())))
        else:
            out["errors"].append(str(r.status_code))


async def scenario(url: str, path: str, body: bytes, duration: float) -> dict[str, Any]:
    """CLIENTS concurrent clients on one endpoint for ``duration`` seconds."""
    out: dict[str, Any] = {"latency": [], "errors": [], "busy": 0}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        until = time.monotonic() + duration
        await asyncio.gather(*(client(http, path, body, until, out) for _ in range(CLIENTS)))
        t0 = time.monotonic()
        health = await http.get("/health")
        out["health_after_s"] = time.monotonic() - t0
        out["health_status"] = health.status_code
    return out


def main() -> None:
    """Run every scenario and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per scenario")
    args = parser.parse_args()
    payloads = bodies()
    with running_server() as url:
        port = int(url.rsplit(":", 1)[1])
        print(f"{CLIENTS} clients, {args.duration:g} s per scenario, server on {url}")
        header = (
            f"{'scenario':<24} {'requests':>8} {'errors':>6} {'503s':>6} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'RSS before':>10} {'RSS after':>10} {'/health s':>9}"
        )
        print(header)
        for path, body in payloads.items():
            before = server_rss_mb(port)
            out = asyncio.run(scenario(url, path.split()[0], body, args.duration))
            after = server_rss_mb(port)
            lat = np.array(out["latency"]) * 1000
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (np.nan, np.nan)
            total = len(lat) + out["busy"] + len(out["errors"])
            print(
                f"{path:<24} {total:>8} {len(out['errors']):>6} {out['busy']:>6} {p50:>8.1f} {p99:>8.1f} "
                f"{before:>8.0f}MB {after:>8.0f}MB {out['health_after_s']:>9.3f}"
            )
            if out["errors"]:
                print(f"  errors: {sorted(set(out['errors']))}")


if __name__ == "__main__":
    main()
