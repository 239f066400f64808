"""What every part of the benchmark shares: the runtimes, the one error type, machine and latency figures."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from export.targets.base import BenchRow

DEFAULT_RUNTIMES = ("eager", "compile", "onnxruntime", "openvino-f32", "openvino-bf16", "openvino-int8")
TORCH_RUNTIMES = ("eager", "compile")
# The teacher runs in PyTorch and, converted in the worker, in OpenVINO.
TEACHER_RUNTIMES = ("eager", "compile", "openvino-f32", "openvino-bf16")
T = TypeVar("T")


def export_rows() -> dict[str, tuple[str, BenchRow]]:
    """Every row that times an export: row name -> (format, :class:`~export.targets.base.BenchRow`), as the formats
    declare them (:mod:`export.targets`); rows beyond :data:`DEFAULT_RUNTIMES` are asked for by name."""
    from export.targets import all_targets

    return {row: (t.name, spec) for t in all_targets() for row, spec in t.bench_rows.items()}


def runtimes() -> tuple[str, ...]:
    """Every row ``--runtimes`` accepts."""
    return (*TORCH_RUNTIMES, *export_rows())


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

    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__,
        "platform": platform.platform(),
    }


def latency_stats(times_s: Sequence[float]) -> dict[str, Any]:
    """Median, min and every run in milliseconds."""
    ms = [1e3 * t for t in times_s]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "runs": len(ms), "all_ms": [round(t, 3) for t in ms]}


def progress_bar(iterable: Iterable[T], enabled: bool, **kw: Any) -> Iterable[T]:
    """``iterable`` with a tqdm bar when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)
