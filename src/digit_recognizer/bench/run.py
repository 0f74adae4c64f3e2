"""One benchmark run: every measurement in turn, then results.json, results.md and a line
appended to history.jsonl in the output folder."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from digit_recognizer.artifacts import write_json, write_text
from digit_recognizer.bench.fuzz import fuzz
from digit_recognizer.bench.inference import cold_predict, inference, reading
from digit_recognizer.bench.machine import machine
from digit_recognizer.bench.report import markdown
from digit_recognizer.bench.server_load import canvas_png, server
from digit_recognizer.bench.training import time_to_accuracy, train_throughput


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how much. `quick` shrinks everything to run in about 2 minutes."""

    out: Path  # folder for results.json, results.md and history.jsonl
    quick: bool = False
    shipped_run: Path | None = None  # run folder of the shipped model's Keras file, if kept
    data_dir: str | None = None  # MNIST; None: DIGITS_DATA_DIR, cache, download
    latency_calls: int = 1000  # single-image calls per latency figure
    batch: int = 1024  # images per call for throughput
    requests: int = 600  # POST /api/predict per concurrency level
    concurrency: tuple[int, ...] = (1, 8, 32)
    max_train_seconds: float = 600.0  # time-to-accuracy runs stop here if not reached
    workers: int = os.cpu_count() or 1  # `digits serve --workers` for the load test
    fuzz_cases: int = 10_000  # schemathesis requests over every route


# `digits train --recipe` presets, timed to 99.0/99.5 %
TIMED_RECIPES = ("baseline", "fast", "accurate-short")
TRAIN_BATCH = {"fast": 256, "deep": 256}  # each model's recipe batch size (128 otherwise)


def run_benchmarks(cfg: BenchConfig, progress=lambda message: None) -> dict:
    """Measure everything in one run; write results.json and results.md into cfg.out and
    append the run's summary to cfg.out/history.jsonl."""
    from digit_recognizer.data import load_dataset
    from digit_recognizer.export import export_onnx
    from digit_recognizer.predict import DEFAULT_MODEL

    quick = cfg.quick
    results: dict = {"machine": machine(), "quick": quick}
    limit = 2000 if quick else None
    data = load_dataset("mnist", Path(cfg.data_dir) if cfg.data_dir else None, limit=limit)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        progress("training throughput")
        results["training_images_per_s"] = {
            name: train_throughput(name, TRAIN_BATCH.get(name, 128), 5 if quick else 40)
            for name in ("mlp", "cnn", "fast", "deep")
        }
        targets = (0.99, 0.995)
        runs = {}
        for recipe in TIMED_RECIPES:
            progress(f"time to accuracy: {recipe} recipe")
            overrides = {"epochs": 1, "limit": limit} if quick else {}
            runs[recipe] = time_to_accuracy(
                recipe, data, targets, cfg.max_train_seconds, work, **overrides
            )
        results["time_to_accuracy"] = runs
        progress("inference: Keras vs ONNX Runtime")
        keras_model = (
            work / "fast" / "model.keras" if quick else _shipped_keras(work, cfg.shipped_run)
        )
        onnx_model = export_onnx(keras_model, work / "bench.onnx")[0] if quick else DEFAULT_MODEL
        calls = 200 if quick else cfg.latency_calls
        results["inference"] = inference(keras_model, onnx_model, calls, cfg.batch)
        # A file of this run's temporary folder is named, not its path (gone after the run).
        inside_work = keras_model.is_relative_to(work)
        results["inference"]["keras_model"] = keras_model.name if inside_work else str(keras_model)
        progress("reading the page's canvases")
        results["reading"] = reading(100 if quick else 500)
        progress("cold start")
        image = work / "one.png"
        image.write_bytes(canvas_png())
        results["cold_start"] = {"predict": cold_predict(image, 3 if quick else 7)}
        progress("server under load")
        requests = 60 if quick else cfg.requests
        results["server"] = server(requests, cfg.concurrency, cfg.workers)
        results["cold_start"]["serve_ready_s"] = results["server"]["ready_s"]
    progress("fuzzing the API")
    results["fuzz"] = fuzz(300 if quick else cfg.fuzz_cases)
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_json(cfg.out / "results.json", results)
    write_text(cfg.out / "results.md", markdown(results))
    append_history(cfg.out / "history.jsonl", summary(results))
    return results


def _shipped_keras(work: Path, shipped_run: Path | None) -> Path:
    """The Keras model the shipped ONNX file was exported from (`make ship-model`) or, on a
    fresh checkout, the network its graph computes, read back from the file: the same
    computation, so the same latency, without training it first."""
    if shipped_run is not None and (shipped_run / "model.keras").is_file():
        return shipped_run / "model.keras"
    from digit_recognizer.finetune import keras_from_onnx
    from digit_recognizer.predict import DEFAULT_MODEL

    path = work / "shipped-read-back.keras"
    keras_from_onnx(DEFAULT_MODEL).save(path)
    return path


def summary(results: dict) -> dict:
    """The headline figures of one run, for history.jsonl: enough to see drift between runs
    and versions without opening each results.json."""
    runs, inf, levels = results["time_to_accuracy"], results["inference"], results["server"]
    return {
        "date": results["machine"]["date"],
        "cpu": results["machine"]["cpu"],
        "vector_extensions": results["machine"]["vector_extensions"],
        "version": results["machine"]["versions"].get("digit-recognizer"),
        "quick": results["quick"],
        "seconds_to_99": {name: run["seconds_to"]["0.990"] for name, run in runs.items()},
        "seconds_to_99_5": {name: run["seconds_to"]["0.995"] for name, run in runs.items()},
        "onnxruntime_p50_ms": inf["onnxruntime"]["p50_ms"],
        "onnxruntime_p99_ms": inf["onnxruntime"]["p99_ms"],
        "keras_p50_ms": inf["keras"]["p50_ms"],
        "cold_predict_s": results["cold_start"]["predict"]["median_s"],
        "digit_canvas_p50_ms": results["reading"]["digit_canvas"]["p50_ms"],
        "number_canvas_p50_ms": results["reading"]["number_canvas"]["p50_ms"],
        "serve_ready_s": results["cold_start"]["serve_ready_s"],
        "fuzz_cases": results["fuzz"]["cases"],
        "fuzz_server_errors": results["fuzz"]["server_errors"],
        "server": {
            str(level["concurrency"]): {
                "requests_per_s": level["requests_per_s"], "p50_ms": level["p50_ms"],
                "p99_ms": level["p99_ms"], "errors": level["errors"],
            }
            for level in levels["levels"]
        },
    }  # fmt: skip


def append_history(path: Path, record: dict) -> None:
    """Add one JSON line to `path`. Appending a line is one write of a few hundred bytes:
    an interrupted run leaves the earlier lines as they were."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as history:
        history.write(json.dumps(record, sort_keys=True) + "\n")
