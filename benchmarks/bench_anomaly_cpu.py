"""CPU time of one /anomaly request with examples/anomaly_request.json (5 users), in-process.

    python benchmarks/bench_anomaly_cpu.py             # 2,000 calls each
    python benchmarks/bench_anomaly_cpu.py --profile   # also the top cProfile entries of the route

Figures are process CPU time per call (a busy machine inflates it far less than wall clock):
the route's scoring function alone (validate, score, flag, JSON answer), each of its steps on
its own, and the whole request through the app (FastAPI TestClient: HTTP parsing, pydantic,
middleware, and the test client's own CPU, which a real server does not pay). Issue 20's
/anomaly target of 250 requests/s on 2 workers leaves about 6 ms of CPU per request in all.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from api import routes  # noqa: E402
from api.main import create_app  # noqa: E402
from api.schemas import EXAMPLES_DIR, AnomalyRequest  # noqa: E402
from core.anomaly.scoring import flags_and_threshold, score_rows  # noqa: E402
from core.anomaly.validation import validate_features  # noqa: E402
from core.store.artifacts import Artifacts, default_dir, load_artifacts  # noqa: E402

WARMUP = 100
TARGET_MS = 6.0


def cpu_ms(call: Callable[[], Any], n: int) -> float:
    """Process CPU milliseconds per call, over n calls after a warm-up."""
    for _ in range(WARMUP):
        call()
    start = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - start) * 1000 / n


def step_ms(arts: Artifacts, body: AnomalyRequest, n: int) -> dict[str, float]:
    """CPU ms per call of each step of the route's scoring function, on its own."""
    detector = arts.detector
    assert detector is not None, "the artifacts have no anomaly detector"
    features = routes._features_matrix(body)
    val = validate_features(features)
    scores = score_rows(features, val.scorable, detector)
    steps: dict[str, Callable[[], Any]] = {
        "request -> FeatureMatrix (no DataFrame)": lambda: routes._features_matrix(body),
        "validate_features": lambda: validate_features(features),
        "score_rows": lambda: score_rows(features, val.scorable, detector),
        "  of which z rows and the forest (no buyer rows)": lambda: detector._score_z(
            detector.one_sided_z(features.values)
        ),
        "flags_and_threshold (buyer policy)": lambda: flags_and_threshold(
            scores, body.share, detector, features, protect_buyers=body.protect_buyers
        ),
    }
    return {name: cpu_ms(call, n) for name, call in steps.items()}


def main() -> None:
    """Print the CPU time per /anomaly request, in the core route and through the app."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per figure")
    parser.add_argument("--profile", action="store_true", help="cProfile the route's scoring function")
    args = parser.parse_args()
    payload = json.loads((EXAMPLES_DIR / "anomaly_request.json").read_text())
    arts = load_artifacts(default_dir())
    body = AnomalyRequest.model_validate(payload)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min); {len(payload['users'])} users per request")
    route = cpu_ms(lambda: routes._score_anomaly(arts, body), args.n)
    print(f"route scoring function (validate, score, flag, JSON): {route:.2f} ms CPU per request")
    for name, ms in step_ms(arts, body, args.n).items():
        print(f"  {name:52s} {ms:.3f} ms")
    with TestClient(create_app(default_dir())) as client:

        def post() -> None:
            """One /anomaly request that must succeed."""
            r = client.post("/anomaly", json=payload)
            r.raise_for_status()

        whole = cpu_ms(post, args.n)
    print(f"whole request through the app (TestClient):      {whole:.2f} ms CPU per request (target < {TARGET_MS})")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [routes._score_anomaly(arts, body) for _ in range(300)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
