"""The feedback store under `digits serve --workers 2`: 8 clients posting 2,000 corrections
lose none, on SQLite and on PostgreSQL, and a worker killed with SIGKILL mid-run loses no
correction it had acknowledged."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer import feedback as fb
from digit_recognizer.bench import free_port, start_server
from digit_recognizer.images import grey_png

CLIENTS = 8
POSTS = 2000


def bodies(version: str, client: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(client)
    view = base64.b64encode(grey_png(rng.integers(0, 256, (28, 28)))).decode()
    return [
        json.dumps({
            "client_id": f"load-client-{client:02d}", "model_version": version,
            "predicted": k % 10, "label": (k * 7) % 10, "probabilities": [0.1] * 10,
            "view_png": view,
        }).encode()
        for k in range(count)
    ]  # fmt: skip


def post_all(port: int, messages: list[bytes], acked: list[int], failed: list[str]) -> None:
    """POST each message on one keep-alive connection, reconnecting after a failure; the ids
    the server acknowledged go to `acked`, anything else to `failed`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for message in messages:
        try:
            connection.request(
                "POST", "/api/feedback", message, {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status == 201:
                acked.append(answer["id"])
            else:
                failed.append(f"{response.status} {answer}")
        except (OSError, http.client.HTTPException) as e:
            failed.append(repr(e))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


def serve(url: str):
    port = free_port()
    process, _ = start_server(port, 2, ("--db", url, "--feedback-rate", "100000"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/model")
    version = json.loads(connection.getresponse().read())["model_version"]
    return process, port, version


def workers_of(process) -> list[int]:
    """The uvicorn worker processes under `digits serve` (multiprocessing's spawned children)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return [
        int(pid) for pid in children
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]  # fmt: skip


def run_clients(port: int, version: str, during=None) -> tuple[list[int], list[str]]:
    acked: list[int] = []
    failed: list[str] = []
    per_client = POSTS // CLIENTS
    threads = [
        threading.Thread(
            target=post_all, args=(port, bodies(version, c, per_client), acked, failed)
        )
        for c in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    if during:
        during(acked)
    for thread in threads:
        thread.join()
    return acked, failed


def test_two_workers_and_eight_clients_store_every_correction(db_url):
    process, port, version = serve(db_url)
    try:
        acked, failed = run_clients(port, version)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert failed == []
    assert len(acked) == POSTS and len(set(acked)) == POSTS
    stored = fb.open_store(db_url).corrections()
    assert len(stored) == POSTS and {r.id for r in stored} == set(acked)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_worker_killed_mid_run_loses_no_acknowledged_correction(db_url):
    process, port, version = serve(db_url)
    killed = []

    def kill_a_worker(acked: list[int]) -> None:
        while len(acked) < POSTS // 4:
            time.sleep(0.01)
        victim = workers_of(process)[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    try:
        acked, failed = run_clients(port, version, during=kill_a_worker)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert killed, "no worker was killed"
    stored = {r.id for r in fb.open_store(db_url).corrections()}
    assert set(acked) <= stored  # every acknowledged write survived
    # a request cut off by the kill may have committed before its answer was lost, never more
    assert len(stored) <= len(acked) + len(failed)
    assert len(acked) >= POSTS // 4
