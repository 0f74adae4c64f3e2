"""Benchmarks: training speed and time-to-accuracy, inference latency and memory, cold
starts, and the web server under a bounded load. Writes results.json and results.md.

Every figure comes from the run that writes the file; nothing is copied from elsewhere.
Timed work runs in fresh processes where start-up or memory is what is measured.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import library_versions, write_json, write_text
from digit_recognizer.errors import DigitsError

PYTHON = sys.executable


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how much. `quick` shrinks everything to run in about 2 minutes."""

    out: Path = Path("benchmarks/results")
    quick: bool = False
    data_dir: str | None = None  # MNIST; None: DIGITS_DATA_DIR, cache, download
    latency_calls: int = 1000  # single-image calls per latency figure
    batch: int = 1024  # images per call for throughput
    requests: int = 600  # POST /api/predict per concurrency level
    concurrency: tuple[int, ...] = (1, 8, 32)
    max_train_seconds: float = 600.0  # time-to-accuracy runs stop here if not reached
    workers: int = os.cpu_count() or 1  # `digits serve --workers` for the load test


# The CPU features that decide how fast TensorFlow and ONNX Runtime kernels run: hosts named
# alike ("AMD EPYC") differed 2-3.5x in training speed with and without AVX-512.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def machine() -> dict:
    cpu, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "vector_extensions": [flag for flag in VECTOR_FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": library_versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


# --- Inference: Keras vs ONNX Runtime, each in its own process -------------------------

INFERENCE_SCRIPT = r"""
import json, sys, time
import numpy as np
engine, model_path, calls, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
one = rng.uniform(0, 255, (1, 28, 28, 1)).astype(np.float32)
many = rng.uniform(0, 255, (batch, 28, 28, 1)).astype(np.float32)
if engine == "keras":
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from digit_recognizer.models import load_model
    model = load_model(model_path)
    single = lambda: model(one, training=False)
    batched = lambda: model.predict(many, batch_size=batch, verbose=0)
else:
    from digit_recognizer.predict import Recognizer
    recognizer = Recognizer(model_path)
    single = lambda: recognizer.probabilities(one)
    batched = lambda: recognizer.session.run(None, {recognizer.input_name: many})
for _ in range(20):
    single()
batched()
times = []
for _ in range(calls):
    start = time.perf_counter(); single(); times.append(time.perf_counter() - start)
start = time.perf_counter(); rounds = 5
for _ in range(rounds):
    batched()
throughput = rounds * batch / (time.perf_counter() - start)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (TensorFlow-sized) parent
# across fork + exec, while VmHWM belongs to this process's own address space.
status = open("/proc/self/status").read().split("VmHWM:")[1]
peak_mb = int(status.split()[0]) / 1024
print(json.dumps({"single": times, "images_per_s": throughput, "peak_rss_mb": peak_mb}))
"""


def inference(keras_model: Path, onnx_model: Path, calls: int, batch: int) -> dict:
    """Single-image latency (p50/p99), batch throughput and peak RSS, Keras vs ONNX Runtime."""
    results = {}
    for engine, path in (("keras", keras_model), ("onnxruntime", onnx_model)):
        output = subprocess.run(
            [PYTHON, "-c", INFERENCE_SCRIPT, engine, str(path), str(calls), str(batch)],
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


# --- Cold start and the server ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_server(port: int, workers: int) -> tuple[subprocess.Popen, float]:
    """Start `digits serve`; returns the process and seconds until /api/health answered."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "digit_recognizer", "serve", "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    while time.perf_counter() - start < 30:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise DigitsError(f"digits serve did not answer within 30 s: {process.stderr.read()[-500:]}")


def _connect(port: int) -> tuple[socket.socket, io.BufferedReader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, sock.makefile("rb")


def _exchange(sock: socket.socket, reader: io.BufferedReader, message: bytes) -> int:
    """Send one prebuilt HTTP/1.1 request; read the response (status line, headers, a body
    of Content-Length bytes) and return its status code."""
    sock.sendall(message)
    status = int(reader.readline().split()[1])
    length = None
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None or len(reader.read(length)) != length:
        raise OSError("response cut short or without Content-Length")
    return status


def load(
    port: int, body: bytes, requests: int, concurrency: int, content_type: str = "image/png"
) -> dict:
    """POST /api/predict `requests` times from `concurrency` keep-alive clients, then stop.

    The clients draw from one shared count (as `ab -n requests -c concurrency` does), so the
    server sees `concurrency` requests in flight until the last few. With a fixed share per
    client, the clients on a less busy server worker finished early and the rest of the run
    measured fewer clients than it claimed. They send prebuilt request bytes over plain
    sockets: http.client parses every response's headers with the email package, 0.28-0.57
    ms of CPU per request against 0.11-0.19 ms here, taken from the server under test."""
    latencies: list[float] = []
    errors = [0]
    remaining = [requests]
    lock = threading.Lock()
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    message = head.encode("ascii") + body

    def take_one() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def client() -> None:
        connection = None
        while take_one():
            start = time.perf_counter()
            try:
                connection = connection or _connect(port)
                ok = _exchange(*connection, message) == 200
            except (OSError, ValueError, IndexError):  # refused, reset, timed out, garbled
                ok = False
                if connection:
                    connection[0].close()
                connection = None
            with lock:
                latencies.append(time.perf_counter() - start)
                errors[0] += not ok
        if connection:
            connection[0].close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors[0],
        "requests_per_s": requests / elapsed,
        **percentiles(latencies),
    }


def canvas_png() -> bytes:
    """A 280x280 PNG of a 7 drawn as on the page: a black stroke 18 px wide on white, RGBA
    and opaque, compressed as a browser's canvas.toDataURL() gives it. Chromium writes RGBA
    at zlib level 1 (tests/test_browser.py checks both): 3-5 KB that inflate in 0.1-0.2 ms,
    where Pillow's default level 6 packs the long runs of white into 1.5 KB that take 0.5."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), "white")
    ImageDraw.Draw(image).line(
        [(60, 50), (220, 50), (120, 240)], fill="black", width=18, joint="curve"
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def page_request_body() -> bytes:
    """The JSON body the page posts: {"image": "data:image/png;base64,..."}."""
    data_url = "data:image/png;base64," + base64.b64encode(canvas_png()).decode("ascii")
    return json.dumps({"image": data_url}).encode("ascii")


def server(requests: int, concurrency: tuple[int, ...], workers: int) -> dict:
    port = free_port()
    process, ready_s = start_server(port, workers)
    try:
        body = page_request_body()
        load(port, body, 50, 4, "application/json")  # warm-up
        levels = [load(port, body, requests, c, "application/json") for c in concurrency]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/health")
        healthy = connection.getresponse().status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {"ready_s": ready_s, "workers": workers, "levels": levels, "healthy_after": healthy}


# --- Training: throughput and time to accuracy -----------------------------------------


def time_to_accuracy_callback(
    x_test: np.ndarray, y_test: np.ndarray, targets, max_seconds: float, stop: bool = True
):
    """A Keras callback: test accuracy after each epoch against training seconds (evaluation
    not counted); with `stop`, ends training once every target is reached or max_seconds is
    spent."""
    import keras

    class TimeToAccuracy(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.curve, self.reached = 0.0, [], {}

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds += time.perf_counter() - self.start
            predicted = self.model.predict(x_test[..., None], batch_size=2048, verbose=0)
            accuracy = float(np.mean(predicted.argmax(axis=1) == y_test))
            validation = (logs or {}).get("val_accuracy")
            self.curve.append(
                {"epoch": epoch + 1, "seconds": self.seconds, "accuracy": accuracy,
                 "val_accuracy": None if validation is None else float(validation)}
            )  # fmt: skip
            for target in targets:
                if accuracy >= target and str(target) not in self.reached:
                    self.reached[str(target)] = self.seconds
            if stop and (len(self.reached) == len(targets) or self.seconds > max_seconds):
                self.model.stop_training = True

    return TimeToAccuracy()


def time_to_accuracy(recipe: str, data, targets, max_seconds: float, work_dir: Path, **overrides):
    """Train `recipe` as `digits train --recipe` does; when did test accuracy pass each target?"""
    from digit_recognizer.train import recipe_config, train

    callback = time_to_accuracy_callback(data.x_test, data.y_test, targets, max_seconds)
    cfg = recipe_config(recipe, **overrides)
    train(cfg, work_dir / recipe, data=data, verbose=0, extra_callbacks=(callback,))
    return {
        "recipe": recipe,
        "model": cfg.model,
        "config": asdict(cfg),
        "seconds_to": {f"{t:.3f}": callback.reached.get(str(t)) for t in targets},
        "accuracy_after_1_epoch": callback.curve[0]["accuracy"] if callback.curve else None,
        "curve": callback.curve,
    }


def train_throughput(model_name: str, batch_size: int, steps: int) -> float:
    """Training images/s of a registered model on random data, after a warm-up."""

    from digit_recognizer.models import build_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size * steps, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    model = build_model(model_name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, verbose=0)
    return len(x) / (time.perf_counter() - start)


# --- The whole run ---------------------------------------------------------------------

# `digits train --recipe` presets, timed to 99.0/99.5 %
TIMED_RECIPES = ("seed", "fast", "accurate-short")
TRAIN_BATCH = {"fast": 256, "deep": 256}  # each model's recipe batch size (128 otherwise)


def run_benchmarks(cfg: BenchConfig, progress=lambda message: None) -> dict:
    """Measure everything in one run; write results.json and results.md into cfg.out."""
    import tempfile

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
        keras_model = work / "fast" / "model.keras" if quick else _shipped_keras(work)
        onnx_model = export_onnx(keras_model, work / "bench.onnx")[0] if quick else DEFAULT_MODEL
        calls = 200 if quick else cfg.latency_calls
        results["inference"] = inference(keras_model, onnx_model, calls, cfg.batch)
        # A file of this run's temporary folder is named, not its path (gone after the run).
        inside_work = keras_model.is_relative_to(work)
        results["inference"]["keras_model"] = keras_model.name if inside_work else str(keras_model)
        progress("cold start")
        image = work / "one.png"
        image.write_bytes(canvas_png())
        results["cold_start"] = {"predict": cold_predict(image, 3 if quick else 7)}
        progress("server under load")
        requests = 60 if quick else cfg.requests
        results["server"] = server(requests, cfg.concurrency, cfg.workers)
        results["cold_start"]["serve_ready_s"] = results["server"]["ready_s"]
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_json(cfg.out / "results.json", results)
    write_text(cfg.out / "results.md", markdown(results))
    return results


SHIPPED_RUN = Path("runs/robust")  # where `make ship-model` trains the shipped model


def _shipped_keras(work: Path) -> Path:
    """The Keras model the shipped ONNX file was exported from (`make ship-model`) or, on a
    fresh checkout, an untrained network of the same architecture: the same computation, so
    the same latency, without 20 epochs of training first."""
    path = SHIPPED_RUN / "model.keras"
    if path.is_file():
        return path
    from digit_recognizer.models import build_model
    from digit_recognizer.predict import DEFAULT_MODEL, load_card

    architecture = load_card(DEFAULT_MODEL)["training"]["model"]
    path = work / f"untrained-{architecture}.keras"
    build_model(architecture).save(path)
    return path


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results"
        + (" (quick: reduced sizes, not comparable)" if results["quick"] else ""),
        "",
        f"{m['cpu']} ({', '.join(m['vector_extensions'] or ['no AVX2'])}), "
        f"{m['cores']} cores; Python {m['versions']['python']}, "
        f"tensorflow-cpu {m['versions']['tensorflow-cpu']}, keras {m['versions']['keras']}, "
        f"onnxruntime {m['versions']['onnxruntime']}; {m['date']}.",
        "",
        "## Training",
        "",
        "| model | training images/s |",
        "|---|---:|",
        *[f"| {k} | {v:,.0f} |" for k, v in results["training_images_per_s"].items()],
        "",
        "| recipe | model | to 99.0 % test | to 99.5 % test | after 1 epoch | epochs run "
        "| last epoch: test / validation |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in results["time_to_accuracy"].values():
        to, last = run["seconds_to"], run["curve"][-1]
        lines.append(
            f"| {run['recipe']} | {run['model']} | {_seconds(to['0.990'])} | "
            f"{_seconds(to['0.995'])} | {run['accuracy_after_1_epoch']:.2%} | {len(run['curve'])} "
            f"| {last['accuracy']:.2%} / {last['val_accuracy']:.2%} |"
        )
    runs = results["time_to_accuracy"]
    seed_99, fast_99 = (runs[r]["seconds_to"]["0.990"] for r in ("seed", "fast"))
    if seed_99 and fast_99:
        lines += [
            "",
            f"The fast recipe reaches 99.0 % in {fast_99 / seed_99:.2f} of the seed "
            "recipe's time (training seconds, test accuracy checked after each epoch).",
        ]
    inf = results["inference"]
    cold, ready = results["cold_start"]["predict"], results["cold_start"]["serve_ready_s"]
    v = m["versions"]
    lines += [
        "",
        "## Inference (shipped model)",
        "",
        "| engine | single image p50 | p99 | batch of 1,024: images/s | peak RSS |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {name} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
            f"{r['batch_images_per_s']:,.0f} | {r['peak_rss_mb']:.0f} MB |"
            for name, r in ((k, inf[k]) for k in ("keras", "onnxruntime"))
        ],
        "",
        f"ONNX Runtime is {inf['onnx_speedup_p50']:.0f}x faster than Keras `model(x)` per image "
        f"(p50, {inf['keras']['calls']} calls each). Keras side: `{inf['keras_model']}`.",
        "",
        "## Cold start and server",
        "",
        f"- `digits predict one.png` in a fresh process: {cold['median_s']:.2f} s "
        f"(median of {cold['runs']})",
        f"- `digits serve` until `/api/health` answers: {ready:.2f} s",
        "",
        "`POST /api/predict` with a 280x280 canvas PNG (RGBA, sent as the page sends it: a "
        f"JSON data URL), `digits serve --workers {results['server']['workers']}` (uvicorn "
        f"{v['uvicorn']}, httptools {v['httptools']}, asyncio), keep-alive "
        "clients on 127.0.0.1 (same machine) sharing one count of requests:",
        "",
        "| concurrency | requests | errors | requests/s | p50 | p99 |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.0f} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
            for r in results["server"]["levels"]
        ],
        "",
        f"Server healthy afterwards: {results['server']['healthy_after']}.",
        "",
    ]
    return "\n".join(lines)
