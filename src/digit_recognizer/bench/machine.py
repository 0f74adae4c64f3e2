"""Where a benchmark ran (CPU, vector extensions, library versions, date) and latency
percentiles: the context every figure is recorded with."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import library_versions

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
