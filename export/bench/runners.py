"""PyTorch runners (the student's lean graph, a teacher) and the teacher in OpenVINO: each maps a w array ``[1, w_dim]``
to an image array ``[1, 3, R, R]``; built inside the worker process. Exported files run in the runtime's own graphs
(:func:`export.runtime.open_graph`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def torch_module(spec: dict[str, Any]) -> torch.nn.Module:
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

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return self.syn(w, noise_mode="const")

    return _W().eval()


def load_teacher(source: str) -> torch.nn.Module:
    """A teacher generator from a checkpoint, or ``config-f-random``: a config-f StyleGAN2 with random weights."""
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

    from export.runtime import OpenVINOGraph

    module = torch_module(spec)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = torch.zeros(1, spec["w_dim"])
        traced = torch.jit.trace(module, (w,), check_trace=False)
        model = ov.convert_model(traced, input=[tuple(w.shape)])
    graph = OpenVINOGraph(model, threads, precision=spec["hint"])
    return lambda w: graph.run([w]), {"convert_s": time.perf_counter() - t0}
