"""Schemathesis, in-process against the ASGI app: every route of the OpenAPI schema gets
generated requests (over 1,000 in all), and none may be answered with a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from digit_recognizer.bench.fuzz import fuzz, fuzz_app, register_image_bodies

register_image_bodies()
APP = fuzz_app(Path(tempfile.mkdtemp(prefix="digits-fuzz-")))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
CASES: dict[str, int] = {}


@SCHEMA.parametrize()
@settings(max_examples=1100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text)
    if response.status_code >= 400:  # every refusal is JSON that says why
        assert "error" in response.json(), (response.status_code, response.text)
    key = f"{case.method} {case.path}"
    CASES[key] = CASES.get(key, 0) + 1


def test_every_route_was_fuzzed_with_over_a_thousand_cases_in_all():
    """Runs after the fuzzing above (pytest keeps a file's order)."""
    routes = {f"{method.upper()} {path}" for path, item in APP.openapi()["paths"].items()
              for method in item}  # fmt: skip
    assert routes <= set(CASES), routes - set(CASES)
    assert sum(CASES.values()) >= 1000, CASES


def test_the_bench_fuzzer_counts_every_case_and_route():
    report = fuzz(cases=150, seed=1)
    assert report["cases"] == sum(report["per_route"].values()) >= 100
    assert report["server_errors"] == 0 and report["first_errors"] == []
    assert "POST /api/feedback" in report["per_route"]
