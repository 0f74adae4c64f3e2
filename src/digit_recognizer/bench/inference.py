"""Inference benchmarks: Keras against ONNX Runtime on one model (each engine in a fresh
process, see inference_worker.py), and the cold start of `digits predict`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from digit_recognizer.bench.machine import percentiles
from digit_recognizer.errors import DigitsError

PYTHON = sys.executable
WORKER = "digit_recognizer.bench.inference_worker"


def inference(keras_model: Path, onnx_model: Path, calls: int, batch: int) -> dict:
    """Single-image latency (p50/p99), batch throughput and peak RSS, Keras vs ONNX Runtime."""
    results = {}
    for engine, path in (("keras", keras_model), ("onnxruntime", onnx_model)):
        output = subprocess.run(
            [PYTHON, "-m", WORKER, engine, str(path), str(calls), str(batch)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if output.returncode != 0:
            raise DigitsError(f"inference benchmark ({engine}) failed: {output.stderr[-500:]}")
        raw = json.loads(output.stdout.strip().splitlines()[-1])
        results[engine] = {
            **percentiles(raw["single"]),
            "calls": calls,
            "batch_images_per_s": raw["images_per_s"],
            "batch": batch,
            "peak_rss_mb": raw["peak_rss_mb"],
        }
    keras_p50, ort_p50 = results["keras"]["p50_ms"], results["onnxruntime"]["p50_ms"]
    results["onnx_speedup_p50"] = keras_p50 / ort_p50
    return results


def cold_predict(image: Path, repeats: int) -> dict:
    """Wall time of `digits predict IMAGE` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(
            [PYTHON, "-m", "digit_recognizer", "predict", str(image)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise DigitsError(f"digits predict failed: {result.stderr.strip()}")
    return {"median_s": float(np.median(times)), "min_s": float(min(times)), "runs": repeats}


def reading(calls: int) -> dict:
    """Server-side time of the page's two requests, decoding included, in this process:
    a digit drawn on the 280 px canvas (/api/predict) and a 4-digit number on the 840 px
    canvas (/api/read)."""
    from digit_recognizer.bench.server_load import canvas_png, number_canvas_png
    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer()
    digit, number = canvas_png(), number_canvas_png()
    results = {}
    for name, read in (("digit_canvas", lambda: recognizer.read(digit)),
                       ("number_canvas", lambda: recognizer.read_number(number))):  # fmt: skip
        for _ in range(10):  # warm-up
            answer = read()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
        results[name] = {**percentiles(times), "calls": calls}
    results["number_canvas"]["read"] = answer.number
    return results
