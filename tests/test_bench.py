"""`digits bench --quick` runs end to end and writes well-formed results (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from digit_recognizer import bench
from digit_recognizer.bench import server_load


def test_quick_bench_writes_json_and_markdown(tmp_path, mnist_path):
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "digit_recognizer", "bench", "--quick", "--out", str(out),
         "--data-dir", str(mnist_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["machine"]["cores"] >= 1
    assert set(results["machine"]["vector_extensions"]) <= set(bench.VECTOR_FLAGS)
    assert set(results["training_images_per_s"]) == {"mlp", "cnn", "fast", "deep"}
    assert all(v > 0 for v in results["training_images_per_s"].values())
    for recipe in bench.TIMED_RECIPES:
        run = results["time_to_accuracy"][recipe]
        assert set(run["seconds_to"]) == {"0.990", "0.995"}
        assert 0 <= run["accuracy_after_1_epoch"] <= 1 and run["curve"]
        assert all(0 <= point["val_accuracy"] <= 1 for point in run["curve"])
    for engine in ("keras", "onnxruntime"):
        figures = results["inference"][engine]
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["batch_images_per_s"] > 0 and figures["peak_rss_mb"] > 0
    assert results["cold_start"]["predict"]["median_s"] > 0
    assert results["cold_start"]["serve_ready_s"] > 0
    levels = results["server"]["levels"]
    assert [level["concurrency"] for level in levels] == [1, 8, 32]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["quick"] is True  # one line appended per run
    assert history[0]["onnxruntime_p50_ms"] == results["inference"]["onnxruntime"]["p50_ms"]
    assert all(level["errors"] == 0 and level["requests"] == 60 for level in levels)
    assert results["server"]["healthy_after"] is True
    text = (out / "results.md").read_text()
    assert "## Inference (shipped model)" in text and "| onnxruntime |" in text
    assert "Keras side: `model.keras`" in text
    assert results["fuzz"]["cases"] >= 250 and results["fuzz"]["server_errors"] == 0
    assert "## The API fuzzed" in text and history[0]["fuzz_server_errors"] == 0


def test_server_is_timed_on_the_request_the_page_sends():
    from digit_recognizer.images import open_image
    from digit_recognizer.web.app import decode_data_url

    image = json.loads(bench.page_request_body())["image"]  # as app.js posts it
    assert image.startswith("data:image/png;base64,")
    canvas = open_image(decode_data_url(image))
    assert canvas.mode == "RGBA" and canvas.size == (280, 280)  # as canvas.toDataURL gives


def test_full_bench_needs_no_trained_keras_model(tmp_path, monkeypatch):
    """Without runs/robust (a fresh checkout) Keras is timed on the shipped network, read
    back from its ONNX file."""
    from digit_recognizer.bench.run import _shipped_keras
    from digit_recognizer.models import load_model
    from digit_recognizer.predict import DEFAULT_MODEL, Recognizer

    path = _shipped_keras(tmp_path, tmp_path / "missing")
    assert path.parent == tmp_path
    images = np.random.default_rng(0).uniform(0, 255, (4, 28, 28)).astype(np.float32)
    keras_answers = load_model(path).predict(images[..., None], verbose=0)
    assert np.allclose(keras_answers, Recognizer(DEFAULT_MODEL).probabilities(images), atol=1e-4)


def test_load_generator_reads_keep_alive_responses_and_counts_errors(monkeypatch):
    """The load generator's own HTTP client: statuses read, bodies consumed (the connection
    stays in step), refused connections and non-200 answers counted, never raised. The
    clients share one count: a connection answered slowly does not hold the others back."""
    import threading
    import time
    from collections import Counter
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[bytes] = []
    per_connection: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

        def do_POST(self):
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            per_connection[self.client_address] += 1
            if self.server.slow == self.client_address:
                time.sleep(1.0)
            answer = b'{"digit": 7}' * (50 if self.server.status == 200 else 1)
            self.send_response(self.server.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.slow = None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for status, errors in ((200, 0), (422, 7)):
            server.status = status
            result = server_load.load(server.server_address[1], b"png bytes", 7, 2)
            assert result["errors"] == errors and result["requests"] == 7
        assert seen == [b"png bytes"] * 14

        per_connection.clear()
        server.status = 200
        connect, lock = server_load._connect, threading.Lock()

        def connect_first_one_slow(port):  # the first connection made is answered in 1 s
            connection = connect(port)
            with lock:
                server.slow = server.slow or connection[0].getsockname()
            return connection

        monkeypatch.setattr(server_load, "_connect", connect_first_one_slow)
        result = server_load.load(server.server_address[1], b"png bytes", 40, 2)
        assert result["errors"] == 0 and sum(per_connection.values()) == 40
        # A fixed share would have been 20; on a loaded machine the other client's 35 or so
        # requests can take a few seconds, so a few slow ones are fine.
        assert per_connection[server.slow] <= 5
    finally:
        server.shutdown()
    refused = server_load.load(bench.free_port(), b"png bytes", 3, 2)
    assert refused["errors"] == 3


def test_time_to_accuracy_stops_at_its_targets_unless_told_to_go_on():
    images, labels = np.zeros((4, 28, 28), np.float32), np.array([0, 1, 2, 3])

    class PerfectModel:
        stop_training = False

        def predict(self, x, **kwargs):
            return np.eye(10)[labels]

    for stop in (True, False):
        model = PerfectModel()
        callback = bench.time_to_accuracy_callback(images, labels, (0.99, 0.995), 1e9, stop=stop)
        callback.set_model(model)
        callback.on_epoch_begin(0)
        callback.on_epoch_end(0, {})
        assert set(callback.reached) == {"0.99", "0.995"}
        assert model.stop_training is stop
