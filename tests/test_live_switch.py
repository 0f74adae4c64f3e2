"""`digits serve` switches to a promoted model version, and back on rollback, while 8
clients keep it busy: no request fails, and each answer names the version that gave it."""

from __future__ import annotations

import http.client
import json
import threading
import time

import onnx

from digit_recognizer.bench import free_port, start_server
from digit_recognizer.bench.server_load import canvas_png
from digit_recognizer.model_store import ModelStore
from digit_recognizer.predict import DEFAULT_MODEL, Recognizer

CLIENTS = 8


def a_new_version_of_the_shipped_model(path) -> str:
    """The shipped network with one metadata entry added: other bytes, so another version."""
    model = onnx.load(str(DEFAULT_MODEL))
    onnx.helper.set_model_props(model, {"note": "promoted in a test"})
    onnx.save(model, str(path))
    return Recognizer(path).version


def hammer(port: int, stop: threading.Event, answers: list, failures: list) -> None:
    body = canvas_png()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        try:
            connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status == 200:
                answers.append((time.monotonic(), answer["model_version"]))
            else:
                failures.append(f"{response.status} {answer}")
        except (OSError, http.client.HTTPException) as e:
            failures.append(repr(e))
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def versions_between(answers: list, start: float, end: float = float("inf")) -> set[str]:
    return {version for at, version in list(answers) if start < at < end}


def test_promotion_and_rollback_switch_a_busy_server_without_a_failed_request(tmp_path):
    models = ModelStore(tmp_path / "models")
    shipped = Recognizer().version
    candidate = a_new_version_of_the_shipped_model(tmp_path / "candidate.onnx")
    port = free_port()
    options = ("--store", str(models.root), "--db", f"sqlite:///{tmp_path / 'f.sqlite'}")
    process, _ = start_server(port, 2, options)
    stop, answers, failures = threading.Event(), [], []
    clients = [
        threading.Thread(target=hammer, args=(port, stop, answers, failures))
        for _ in range(CLIENTS)
    ]
    try:
        for client in clients:
            client.start()
        time.sleep(1.0)
        promoted_at = time.monotonic()
        assert models.add(tmp_path / "candidate.onnx", {"note": "test"}) == 1
        time.sleep(2.5)
        rolled_back_at = time.monotonic()
        models.rollback()
        time.sleep(2.5)
    finally:
        stop.set()
        for client in clients:
            client.join()
        process.terminate()
        process.wait(timeout=20)
    assert failures == []
    assert versions_between(answers, 0, promoted_at) == {shipped}
    # each worker looks at the pointer at most every 0.5 s and loads the model in ~0.1 s
    assert versions_between(answers, promoted_at + 1.5, rolled_back_at) == {candidate}
    assert versions_between(answers, rolled_back_at + 1.5) == {shipped}
    assert len(answers) > 200
