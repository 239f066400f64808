"""What every part of the benchmark shares: the runtimes, the one error type, machine and latency figures."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any, Sequence

DEFAULT_RUNTIMES = ("eager", "compile", "onnxruntime", "openvino-f32", "openvino-bf16", "openvino-int8")
# Asked for by name: executorch and executorch-fp16 (XNNPACK; the executorch extra), litert and litert-fp16 (XNNPACK;
# the litert extra), the web export's page in headless Chromium (ONNX Runtime Web, WASM, with 1 and with 2 threads
# whatever --threads says; needs Chromium) and coreml (the coreml extra; size only: Core ML predicts on Apple devices).
BROWSER_RUNTIMES = {"browser-wasm1": 1, "browser-wasm2": 2}
EDGE_RUNTIMES = {"executorch": ("executorch", "fp32"), "executorch-fp16": ("executorch", "fp16"),
                 "litert": ("tflite", "fp32"), "litert-fp16": ("tflite", "fp16")}  # runtime: (export format, precision)
RUNTIMES = DEFAULT_RUNTIMES + (*EDGE_RUNTIMES, *BROWSER_RUNTIMES, "coreml")
TORCH_RUNTIMES = ("eager", "compile")
OV_HINTS = {"openvino-f32": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
MMAP_TUNABLE = "glibc.malloc.mmap_threshold=2147483647"
QUALITY_GATE_DB = 40.0
PUBLISHED_INPUT = "style"


class BenchError(Exception):
    """A benchmark that cannot run; the message is one line for the user."""

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__, "platform": platform.platform()}


def latency_stats(times_s: Sequence[float]) -> dict[str, Any]:
    ms = [1e3 * t for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "runs": len(ms), "all_ms": [round(t, 3) for t in ms]}


def progress_bar(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)
