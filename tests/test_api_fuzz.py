"""Fuzzing: no request body makes the API answer 5xx.

1. schemathesis generates valid and invalid requests from the app's own OpenAPI schema and checks
   every answer (no server error, documented status and schema, invalid data rejected, valid
   data accepted).
2. hypothesis sends arbitrary JSON documents, and the committed example bodies with one value
   swapped for arbitrary JSON, straight to the endpoints.

Bounded (max_examples 50 per operation, no deadline) so the module runs in well under a minute.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from core.anomaly.validation import validate_features
from core.store.artifacts import default_dir

MAX_EXAMPLES = 50
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=True,  # the same cases on every run: a CI failure reproduces locally
)

# Skipped without a build (a documented 503 on /anomaly would fail the checks); failed under CI.
pytestmark = pytest.mark.usefixtures("built_artifacts")

# The app over the default artifacts, for the schema fuzzing: it loads them on its first request.
APP = create_app(default_dir())
OPENAPI = APP.openapi()
# The document /openapi.json serves, read without a request: schemathesis.openapi.from_asgi would run
# the app's lifespan, loading every artifact while the module is collected, even when the schema
# fuzzing (e2e) is deselected. With the app attached, the cases are sent to it as from_asgi's are.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(OPENAPI)))
schema.app = APP
schema.location = "/openapi.json"
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]


def _body_validator(path: str) -> Draft202012Validator:
    """A JSON Schema validator of an operation's request body, refs resolved in the document."""
    ref = OPENAPI["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return Draft202012Validator({**ref, "components": OPENAPI["components"]})


BODY_VALIDATORS = {path: _body_validator(path) for path in ("/rank", "/anomaly")}


def _breaks_a_feature_rule(case) -> bool:
    """True when an /anomaly body's users break a cross-field rule of the data contract.

    JSON Schema cannot say "view + addtocart + transaction == events", so a schema-valid body can
    still be refused (422) by the one feature-row validator the dashboard shares.
    """
    if case.path != "/anomaly" or not isinstance(case.body, dict) or not case.body.get("users"):
        return False
    users = pd.DataFrame(case.body["users"])
    return not bool(validate_features(users).scorable.all())


def _checks_for(case) -> list:
    """The checks, minus positive_data_acceptance when the 'valid' body is not valid.

    schemathesis' coverage phase sometimes labels a value outside the bounds as valid (e.g.
    share = 1.0 as the "minimum" of exclusiveMinimum 0 / maximum 0.5). Such a body is checked
    against the schema here, independently of the app, and against the feature-row rules.
    """
    validator = BODY_VALIDATORS.get(case.path)
    mode = case.meta.generation.mode if case.meta else None
    if mode == GenerationMode.POSITIVE and (
        (validator and not validator.is_valid(case.body)) or _breaks_a_feature_rule(case)
    ):
        return [c for c in CHECKS if c is not positive_data_acceptance]
    return CHECKS


@pytest.mark.e2e  # schema fuzzing: hundreds of generated requests
@schema.parametrize()
@FUZZ_SETTINGS
def test_schema_fuzz_never_5xx(case):
    response = case.call_and_validate(checks=_checks_for(case))
    assert response.status_code < 500


# ------------------------------------------------------------------------------ raw JSON bodies

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


def _raw(value: Any) -> bytes:
    """JSON as Python's json module writes it: NaN/Infinity literals included on purpose."""
    return json.dumps(value, allow_nan=True).encode()


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, prefix + (i,))
    return out


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    """A copy of doc with the value at path replaced."""
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


EXAMPLE_FILES = {"/rank": "rank_request.json", "/anomaly": "anomaly_request.json"}


@pytest.fixture(scope="module")
def client(light_artifact_dir):
    """The app over the build with 2-tree forests (conftest.light_artifact_dir): these bodies are
    refused or answered whatever the forests' size."""
    with TestClient(create_app(light_artifact_dir)) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/rank", "/anomaly"])
@FUZZ_SETTINGS
@given(body=json_values)
def test_arbitrary_json_never_5xx(client, path, body):
    r = client.post(path, content=_raw(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), (r.status_code, r.text)
    r.json()  # always a JSON answer


@pytest.mark.parametrize("path", ["/rank", "/anomaly"])
@FUZZ_SETTINGS
@given(data=st.data(), value=json_values)
def test_mutated_examples_never_5xx(client, example, path, data, value):
    body = example(EXAMPLE_FILES[path])
    where = data.draw(st.sampled_from(_paths(body)))
    mutated = _replace(body, where, value)
    r = client.post(path, content=_raw(mutated), headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), (where, r.status_code, r.text)
    r.json()
