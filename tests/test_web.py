"""The web API: every documented status, never a 500, still serving afterwards."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from digit_recognizer.web.app import create_app

HANDWRITING = Path(__file__).resolve().parents[1] / "data" / "handwriting"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(max_bytes=1_000_000, max_pixels=4_000_000))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def seven() -> bytes:
    return sorted(HANDWRITING.glob("7_*.png"))[0].read_bytes()


def assert_answer(response, digit: int) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["digit"] == digit and 0 < body["confidence"] <= 1
    assert len(body["probabilities"]) == 10 and body["latency_ms"] > 0
    ranked = np.argsort(body["probabilities"])
    assert body["runner_up"] == ranked[-2] != digit and isinstance(body["unsure"], bool)
    assert body["runner_up_probability"] == pytest.approx(body["probabilities"][ranked[-2]])
    view = Image.open(io.BytesIO(base64.b64decode(body["view_png"])))
    assert view.size == (28, 28)


def test_page_health_model_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/health").json()["status"] == "ok"
    card = client.get("/api/model").json()
    assert card["model_file"] == "model.onnx" and card["test_accuracy"] > 0.99
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]


def test_predict_multipart_json_and_raw(client):
    data = seven()
    assert_answer(client.post("/api/predict", files={"image": ("7.png", data, "image/png")}), 7)
    data_url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert_answer(client.post("/api/predict", json={"image": data_url}), 7)
    assert_answer(
        client.post("/api/predict", content=data, headers={"content-type": "image/png"}), 7
    )


def test_inline_and_thread_pool_give_the_same_answer(client, monkeypatch):
    """Small uploads are read on the event loop, larger ones in the thread pool."""
    from digit_recognizer.web import app as web_app

    def answer() -> dict:
        response = client.post(
            "/api/predict", content=seven(), headers={"content-type": "image/png"}
        )
        assert response.status_code == 200, response.text
        return {k: v for k, v in response.json().items() if k != "latency_ms"}

    inline = answer()
    monkeypatch.setattr(web_app, "INLINE_BYTES", 0)
    assert answer() == inline and inline["digit"] == 7


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty request body"),
        ({"content": b"hello", "headers": {"content-type": "image/png"}}, 400, "not a readable"),
        ({"content": png_bytes(Image.new("L", (50, 50)))[:30],
          "headers": {"content-type": "image/png"}}, 400, "not a readable image"),  # truncated
        ({"json": {"image": "data:image/png;base64,@@@"}}, 400, "not valid base64"),
        ({"json": {"picture": "x"}}, 400, 'needs "image"'),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
         "not valid JSON"),
        ({"files": {"other": ("a.txt", b"abc", "text/plain")}}, 400, 'file field named "image"'),
        ({"content": png_bytes(Image.new("L", (200, 200), 255)),
          "headers": {"content-type": "image/png"}}, 422, "no digit found"),
        ({"content": b"x" * 1_000_001, "headers": {"content-type": "image/png"}}, 413,
         "over the 1,000,000-byte limit"),
        ({"content": png_bytes(Image.new("L", (3000, 2000), 255)),
          "headers": {"content-type": "image/png"}}, 413, "pixel limit"),  # decompression bomb
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "unsupported"),
        ({"content": b"abc"}, 415, "unsupported"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("route", ["/api/predict", "/api/read"])
def test_bad_input_gets_a_4xx_json_error(client, route, kwargs, status, message):
    """Every error status of both reading routes (they share the input forms)."""
    response = client.post(route, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/api/health").status_code == 200  # still serving
    assert_answer(
        client.post("/api/predict", content=seven(), headers={"content-type": "image/png"}), 7
    )


def test_chunked_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 100_000

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=4096),
    content_type=st.sampled_from(
        ["image/png", "image/jpeg", "application/octet-stream", "application/json",
         "multipart/form-data; boundary=xyz", "text/plain", ""]
    ),
)  # fmt: skip
def test_random_bodies_only_documented_statuses(client, body, content_type):
    response = client.post("/api/predict", content=body, headers={"content-type": content_type})
    assert response.status_code in (200, 400, 413, 415, 422)
    assert "error" in response.json() or "digit" in response.json()


@pytest.mark.parametrize("route", ["/api/predict", "/api/read"])
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.integers(1, 90), st.integers(0, 2**32 - 1))
def test_random_images_only_documented_statuses(client, route, width, height, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    response = client.post(
        route, files={"image": ("r.png", png_bytes(Image.fromarray(pixels)), "image/png")}
    )
    assert response.status_code in (200, 422), response.text


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_view_png_holds_the_view_clipped_to_8_bits(height, width, seed):
    """The hand-written PNG of the model's view decodes, in Pillow, to the view's pixels."""
    from digit_recognizer.images import grey_png

    view = np.random.default_rng(seed).uniform(-50, 300, (height, width)).astype(np.float32)
    image = Image.open(io.BytesIO(grey_png(view)))
    assert image.mode == "L" and image.size == (width, height)
    assert np.array_equal(np.asarray(image), np.clip(view, 0, 255).astype(np.uint8))


def test_a_data_url_without_a_comma_is_a_400(client):
    """Found by schemathesis: `{"image": "data:"}` was an IndexError, a 500."""
    response = client.post("/api/predict", json={"image": "data:"})
    assert response.status_code == 400 and "no comma" in response.json()["error"]


def test_deeply_nested_json_is_a_400(client):
    body = b"[" * 1000 + b"]" * 1000
    response = client.post(
        "/api/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "nested" in response.json()["error"]
    response = client.post(
        "/api/predict", content=b'{"image": ' + body + b"}",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400


def test_an_oversized_body_sent_without_expect_gets_the_413_json():
    """urllib sends the whole body before reading the answer: a server that answers 413 and
    closes at once leaves it a connection reset instead."""
    import json
    import urllib.error
    import urllib.request

    from digit_recognizer.bench import free_port, start_server

    port = free_port()
    process, _ = start_server(port, workers=1)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/predict", data=bytes(6 * 1024 * 1024),
            headers={"Content-Type": "image/png"}, method="POST",
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)
        assert answer.value.code == 413
        assert "limit" in json.loads(answer.value.read())["error"]
    finally:
        process.terminate()
        process.wait(timeout=10)
