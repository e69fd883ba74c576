"""The API as it really runs: a `uvicorn app:app` process on a free localhost port, over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from api.middleware import MAX_BODY_BYTES

pytestmark = pytest.mark.e2e  # a real uvicorn process

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (closed again, for uvicorn to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(env: dict[str, str] | None = None, attempts: int = 3) -> Iterator[str]:
    """Start `uvicorn app:app` (1 worker) on a free port; yield its base URL; always stop it."""
    for attempt in range(attempts):
        port = free_port()
        log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--log-level", "warning"],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            if _wait_healthy(proc, url):
                yield url
                return
            if attempt == attempts - 1:  # e.g. another process took the port: retry, then fail
                log.seek(0)
                raise RuntimeError(f"uvicorn did not start:\n{log.read().decode(errors='replace')}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_healthy(proc: subprocess.Popen, url: str) -> bool:
    """Poll /health until it answers 200; False if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """One server for the module, stopped in the finalizer."""
    with running_server() as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    """A keep-alive client to the server."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_health_over_http(http):
    r = http.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] in ("ok", "degraded")
    assert r.headers["content-type"] == "application/json"


def test_rank_and_anomaly_over_http(http, example):
    r = http.post("/rank", json=example("rank_request.json"))
    assert r.status_code == 200, r.text
    assert r.json()["ranking"][0]["rank"] == 1
    r = http.post("/anomaly", json=example("anomaly_request.json"))
    assert r.status_code in (200, 503), r.text  # 503 only when no detector is built
    if r.status_code == 200:
        assert len(r.json()["users"]) == len(example("anomaly_request.json")["users"])


def test_bad_body_over_http_is_422(http):
    r = http.post("/rank", json={"views": [], "top_k": 0})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} >= {("body", "views"), ("body", "top_k")}


def test_big_bodies_over_http_are_413(base_url):
    # A declared Content-Length over the limit is refused before any body is read. A raw socket
    # sends only the headers, so the server's early answer never races the upload.
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /rank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = sock.makefile("rb").readline().decode()
    assert status_line.split()[1] == "413", status_line

    def chunks():
        yield b'{"views": ['
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b" " * 65_536
        yield b"]}"

    with httpx.Client(base_url=base_url, timeout=30) as client:
        r = client.post("/rank", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "larger than" in r.json()["detail"]


def test_server_serves_another_artifact_dir(tmp_path, example):
    with running_server(env={"RECSYS_ARTIFACT_DIR": str(tmp_path)}) as url:
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["artifact_dir"] == str(tmp_path)
        assert health["status"] == "degraded"
        r = httpx.post(f"{url}/anomaly", json=example("anomaly_request.json"), timeout=10)
        assert r.status_code == 503
