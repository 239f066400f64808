"""Rendering a teacher's synthesis network with OpenVINO (CPU), to fill a triple cache faster.

The synthesis module is traced once with autograd enabled (its export-friendly formulation),
converted with static shapes for one batch size, and compiled; batches of other sizes are padded.
Measured on 2 CPU cores with the published FFHQ-1024 student as teacher: 0.25 s/image f32 (max
|diff| to PyTorch 1e-6) and 0.17 s/image bf16 (max |diff| 0.018), against ~0.45 s in PyTorch eager.
Validation always renders with the PyTorch teacher.
"""

from __future__ import annotations

import warnings

import torch

PRECISIONS = ("f32", "bf16")


class OpenVINOSynthesis:
    """Callable ``(ws, noise=list) -> img`` running ``synthesis`` through OpenVINO.

    Args:
        synthesis: A synthesis network with ``num_ws``, ``w_dim``, ``noise_shapes`` and
            ``forward(ws, noise=list)`` (teacher or student).
        batch_size: Batch the model is compiled for.
        precision: ``f32`` or ``bf16`` (OpenVINO's ``INFERENCE_PRECISION_HINT``).
        threads: CPU threads for inference (None: OpenVINO's default).
    """

    def __init__(self, synthesis: torch.nn.Module, batch_size: int, precision: str = "f32",
                 threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO render precision must be one of {PRECISIONS}, got {precision!r}")
        import openvino as ov

        self.batch_size = batch_size
        wrapper = _Wrapper(synthesis).eval()
        ws = torch.zeros(batch_size, synthesis.num_ws, synthesis.w_dim)
        noise = [torch.zeros(batch_size, *s) for s in synthesis.noise_shapes]
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks turned into constants
            traced = torch.jit.trace(wrapper, (ws, *noise), check_trace=False)
            model = ov.convert_model(traced, input=[tuple(ws.shape)] + [tuple(n.shape) for n in noise])
        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(model, "CPU", config)

    def __call__(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        n = ws.shape[0]
        outs = []
        for i in range(0, n, self.batch_size):
            chunk = [ws[i:i + self.batch_size]] + [m[i:i + self.batch_size] for m in noise]
            k = chunk[0].shape[0]
            if k < self.batch_size:  # pad to the compiled batch
                chunk = [torch.cat([c, c[:1].expand(self.batch_size - k, *c.shape[1:])]) for c in chunk]
            arrays = [c.detach().float().cpu().contiguous().numpy() for c in chunk]
            outs.append(torch.from_numpy(self.compiled(arrays)[0][:k].copy()))
        return torch.cat(outs).to(ws.device)


class _Wrapper(torch.nn.Module):
    def __init__(self, synthesis: torch.nn.Module) -> None:
        super().__init__()
        self.synthesis = synthesis

    def forward(self, ws: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        return self.synthesis(ws, noise=list(noise))
