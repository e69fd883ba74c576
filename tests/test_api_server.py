"""The API as it really runs: a `python -m api` process (uvicorn) on a free localhost port, over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.middleware import MAX_BODY_BYTES
from api.schemas import MAX_USERS

pytestmark = pytest.mark.e2e  # a real uvicorn process

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180.0  # two workers importing scikit-learn on a busy 2-core machine


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (closed again, for uvicorn to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    env: dict[str, str] | None = None, attempts: int = 3, workers: int = 1, log_path: Path | None = None
) -> Iterator[str]:
    """Start `python -m api` (the production settings) on a free port; yield its base URL; always
    stop it. Its output goes to ``log_path`` when given."""
    for attempt in range(attempts):
        port = free_port()
        # a file, not a pipe: a full pipe would block the server
        log = open(log_path, "w+b") if log_path is not None else tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
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
        assert health["artifact_dir"] == tmp_path.name
        assert health["status"] == "degraded"
        r = httpx.post(f"{url}/anomaly", json=example("anomaly_request.json"), timeout=10)
        assert r.status_code == 503


# ------------------------------------------------------------------------------ hardening

LIMITED = {
    "RECSYS_API_HEADER_TIMEOUT_S": "1",
    "RECSYS_API_BODY_TIMEOUT_S": "5",  # whole 3 MB bodies from 12 clients at once, on a busy machine
    "RECSYS_API_QUEUE": "2",
    "RECSYS_API_SCORING_THREADS": "1",
}


@pytest.fixture(scope="module")
def limited_url() -> Iterator[str]:
    """A server with short deadlines, one scoring slot and two queue places."""
    with running_server(env=LIMITED) as url:
        yield url


def _raw(base_url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return everything the server answers before it closes."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65_536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_duplicate_keys_over_http_are_422(http):
    raw = b'{"top_k": 0, "top_k": 3, "views": [{"timestamp": 1, "categoryid": 2}]}'
    r = http.post("/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "duplicate_key"


def test_content_length_with_transfer_encoding_is_400(base_url):
    body = b'{"views": [{"timestamp": 1, "categoryid": 2}]}'
    answer = _raw(
        base_url,
        b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n",
    )
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400", answer[:200]


def test_a_request_the_server_cannot_parse_is_400_json_with_a_request_id(base_url):
    # uvicorn answers these itself, before the app: still JSON and an X-Request-ID, like every answer.
    for raw in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
        answer = _raw(base_url, raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n", 1)[0].split()[1] == b"400", answer[:200]
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        assert len(headers[b"x-request-id"]) == 32 and headers[b"content-type"] == b"application/json"
        assert "Invalid HTTP request" in json.loads(body)["detail"]


def test_stalled_connections_are_dropped(limited_url):
    host, port = limited_url.removeprefix("http://").split(":")
    stalled = []
    for i in range(40):
        sock = socket.create_connection((host, int(port)), timeout=15)
        if i % 4 == 0:  # complete headers, then a body that never comes
            sock.sendall(
                b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
        else:  # headers that never finish
            sock.sendall(b"POST /rank HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    start = time.monotonic()
    try:
        for sock in stalled:
            data = b""
            while chunk := sock.recv(65_536):  # returns b"" once the server closes
                data += chunk
            # closed silently (headers) or 408 (body); never 503: a body still arriving takes no slot
            assert data == b"" or data.split()[1] == b"408", data[:200]
    finally:
        for sock in stalled:
            sock.close()
    assert time.monotonic() - start < 10
    assert httpx.get(f"{limited_url}/health", timeout=5).status_code == 200


def test_scoring_over_capacity_is_503_with_retry_after_and_health_stays_fast(limited_url, example):
    users = example("anomaly_request.json")["users"]
    # Encoded once: twelve client threads encoding 3 MB each would hold this process's GIL.
    body = json.dumps({"users": [dict(users[i % len(users)], visitorid=i) for i in range(MAX_USERS)]})
    statuses: list[int] = []
    retry_after: list[str | None] = []

    def post() -> None:
        r = httpx.post(
            f"{limited_url}/anomaly", content=body, timeout=120, headers={"content-type": "application/json"}
        )
        statuses.append(r.status_code)
        retry_after.append(r.headers.get("retry-after"))

    workers = [threading.Thread(target=post) for _ in range(12)]
    for w in workers:
        w.start()
    health_s = []
    while any(w.is_alive() for w in workers):
        t0 = time.monotonic()
        assert httpx.get(f"{limited_url}/health", timeout=10).status_code == 200
        health_s.append(time.monotonic() - t0)
        time.sleep(0.05)
    for w in workers:
        w.join()
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all(ra == "1" for s, ra in zip(statuses, retry_after) if s == 503)
    # Not behind scoring (the admission gate keeps it out); what remains is the event loop reading
    # every 3 MB body (read whole before queueing) and validating the admitted ones, on two cores
    # shared with the client threads.
    assert max(health_s) < 5, health_s


def test_no_server_paths_over_http(tmp_path, example):
    with running_server(env={"RECSYS_ARTIFACT_DIR": str(tmp_path)}) as url:
        answers = [
            httpx.get(f"{url}/health"),
            httpx.get(f"{url}/version"),
            httpx.post(f"{url}/rank", json=example("rank_request.json")),
            httpx.post(f"{url}/anomaly", json=example("anomaly_request.json")),
        ]
    for r in answers:
        assert str(tmp_path) not in r.text and str(ROOT) not in r.text, r.text
