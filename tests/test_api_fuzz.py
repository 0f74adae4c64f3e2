"""Schemathesis, in-process against the ASGI app: every route of the OpenAPI schema gets
generated requests (over 1,000 in all), and none may be answered with a server error."""

from __future__ import annotations

import io

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from digit_recognizer.web.app import create_app


def png(pixels: bytes) -> bytes:
    """A small grey PNG of the given bytes (padded to 16x16): a real image, any content."""
    buffer = io.BytesIO()
    Image.frombytes("L", (16, 16), pixels.ljust(256, b"\xff")[:256]).save(buffer, "PNG")
    return buffer.getvalue()


# Raw image bodies (`image/*` in the schema): real PNGs of any content, or any bytes at all.
schemathesis.openapi.media_type(
    "image/*", st.one_of(st.binary(max_size=256).map(png), st.binary(max_size=2048))
)
APP = create_app(max_bytes=1_000_000, max_pixels=4_000_000)
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
