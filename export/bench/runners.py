"""Runners: each maps a w array ``[1, w_dim]`` to an image array ``[1, 3, R, R]``; built inside the worker process."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from export.bench.common import OV_HINTS


def ov_runner(path: str, hint: str | None, threads: int, perf_count: bool = False, input_name: str | None = None
               ) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    if perf_count:
        config["PERF_COUNT"] = True
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()

    def run(w: np.ndarray) -> np.ndarray:
        return request.infer({0: w})[0].copy()

    return run, (compiled, request)


def ort_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda w: sess.run(None, {name: w})[0]


def litert_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The LiteRT interpreter with its default XNNPACK delegate, ``threads`` threads (the runtime's own runner)."""
    from pathlib import Path

    from export.runtime import litert_runner as runtime_litert_runner

    runner, name, out = runtime_litert_runner(Path(path), threads, None, "CPU")
    return lambda w: runner(**{name: w})[out]


def torch_module(spec: dict[str, Any]):
    """The PyTorch module a torch worker times: the lean student graph or a teacher synthesis."""
    import torch

    if spec["model"] == "student":
        from mobilestylegan.io.load import load_any_student
        from mobilestylegan.student.lean import LeanSynthesis

        G = load_any_student(spec["source"])
        return LeanSynthesis(G.synthesis, w_input="w", noise="const").eval()
    T = load_teacher(spec["source"])
    syn = T.synthesis

    class _W(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.syn = syn

        def forward(self, w):
            return self.syn(w, noise_mode="const")

    return _W().eval()


def load_teacher(source: str):
    import torch

    import teacher

    if source == "config-f-random":
        torch.manual_seed(0)
        return teacher.Generator(teacher.GeneratorConfig.stylegan2(1024)).eval().requires_grad_(False)
    return teacher.load_generator(source)


def torch_runner(spec: dict[str, Any], threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    import torch

    torch.set_num_threads(threads)
    module = torch_module(spec)
    extra: dict[str, Any] = {}
    if spec["runtime"] == "compile":
        fn = torch.compile(module)
        t0 = time.perf_counter()
        with torch.inference_mode():
            fn(torch.zeros(1, spec["w_dim"]))
        extra["compile_s"] = time.perf_counter() - t0
    else:
        fn = module

    def run(w: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return fn(torch.from_numpy(w)).numpy()

    return run, extra


def ov_torch_runner(spec: dict[str, Any], threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """OpenVINO on a teacher: converted in the worker from the traced PyTorch synthesis."""
    import warnings

    import openvino as ov
    import torch

    module = torch_module(spec)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = torch.zeros(1, spec["w_dim"])
        traced = torch.jit.trace(module, (w,), check_trace=False)
        model = ov.convert_model(traced, input=[tuple(w.shape)])
    run, _ = ov_runner(model, OV_HINTS[spec["runtime"]], threads)
    return run, {"convert_s": time.perf_counter() - t0}
