"""One inference engine timed in a process of its own: `python -m
digit_recognizer.bench.inference_worker ENGINE MODEL CALLS BATCH` prints one JSON line with the
single-image latencies (s), batch throughput (images/s) and the process's peak memory (MB).

A fresh process per engine, so that neither engine's memory or threads colour the other's.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def engine_calls(engine: str, model_path: str, batch: int):
    """(one image, one batch) callables for `engine`: keras or onnxruntime."""
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, 28, 28, 1)).astype(np.float32)
    many = rng.uniform(0, 255, (batch, 28, 28, 1)).astype(np.float32)
    if engine == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from digit_recognizer.models import load_model

        model = load_model(model_path)
        return (
            lambda: model(one, training=False),
            lambda: model.predict(many, batch_size=batch, verbose=0),
        )
    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer(model_path)
    return (
        lambda: recognizer.probabilities(one),
        lambda: recognizer.session.run(None, {recognizer.input_name: many}),
    )


def peak_memory_mb() -> float:
    """VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (TensorFlow-sized) parent
    across fork + exec, while VmHWM belongs to this process's own address space."""
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) / 1024


def measure(engine: str, model_path: str, calls: int, batch: int, rounds: int = 5) -> dict:
    single, batched = engine_calls(engine, model_path, batch)
    for _ in range(20):  # warm-up: first calls build graphs and allocate
        single()
    batched()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        single()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        batched()
    throughput = rounds * batch / (time.perf_counter() - start)
    return {"single": times, "images_per_s": throughput, "peak_rss_mb": peak_memory_mb()}


if __name__ == "__main__":
    engine, model, calls, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(measure(engine, model, calls, batch)))
