"""The API fuzzed: schemathesis, in-process against the ASGI app, generates requests for
every route of the OpenAPI schema (raw image bodies included); a server error is a failure.
The test suite runs over 1,000 cases; `digits bench` runs 10,000."""

from __future__ import annotations

import io
import tempfile
import time
from collections import Counter
from pathlib import Path


def png(pixels: bytes) -> bytes:
    """A small grey PNG of the given bytes (padded to 16x16): a real image, any content."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("L", (16, 16), pixels.ljust(256, b"\xff")[:256]).save(buffer, "PNG")
    return buffer.getvalue()


def register_image_bodies() -> None:
    """Raw image bodies (`image/*` in the schema): real PNGs of any content, or any bytes."""
    import schemathesis
    from hypothesis import strategies as st

    schemathesis.openapi.media_type(
        "image/*", st.one_of(st.binary(max_size=256).map(png), st.binary(max_size=2048))
    )


def fuzz_app(db_folder: Path):
    from digit_recognizer.web.app import create_app

    return create_app(
        max_bytes=1_000_000, max_pixels=4_000_000, db=f"sqlite:///{db_folder / 'fuzz.sqlite'}"
    )


def fuzz(cases: int = 10_000, seed: int = 0) -> dict:
    """`cases` generated requests over every route: counts per route and status, seconds,
    and the first few server errors (none expected)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    register_image_bodies()
    per_route: Counter = Counter()
    statuses: Counter = Counter()
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app(Path(tmp)))

        @hypothesis_seed(seed)
        @settings(max_examples=cases, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=schema.as_strategy())
        def one(case) -> None:
            response = case.call()
            per_route[f"{case.method} {case.path}"] += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500 and len(errors) < 5:
                errors.append(f"{case.method} {case.path}: {response.status_code}")

        start = time.perf_counter()
        one()
        seconds = time.perf_counter() - start
    return {
        "cases": sum(per_route.values()),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "seconds": seconds,
        "per_route": dict(sorted(per_route.items())),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "first_errors": errors,
    }
