"""Benchmarks: training speed and time to accuracy, inference latency and memory, cold
starts, and the web server under a bounded load (`digits bench`).

Every figure comes from the run that writes it; nothing is copied from elsewhere. Timed work
runs in fresh processes where start-up or memory is what is measured.
"""

from digit_recognizer.bench.machine import VECTOR_FLAGS, machine, percentiles
from digit_recognizer.bench.run import TIMED_RECIPES, BenchConfig, run_benchmarks
from digit_recognizer.bench.server_load import (
    canvas_png,
    free_port,
    page_request_body,
    start_server,
)
from digit_recognizer.bench.training import time_to_accuracy, time_to_accuracy_callback

__all__ = [
    "TIMED_RECIPES",
    "VECTOR_FLAGS",
    "BenchConfig",
    "canvas_png",
    "free_port",
    "machine",
    "page_request_body",
    "percentiles",
    "run_benchmarks",
    "start_server",
    "time_to_accuracy",
    "time_to_accuracy_callback",
]
