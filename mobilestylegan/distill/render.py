"""Rendering a teacher's synthesis network with OpenVINO (CPU), to fill a triple cache faster.

A MobileStyleGAN teacher (e.g. the published ``ffhq-1024`` student) is compiled in its lean export
form (:class:`mobilestylegan.student.lean.LeanSynthesis`: folded demodulation, merged affines, IDWT as band mix +
DepthToSpace) with W+ and noise as inputs; any other synthesis network is traced with autograd enabled
(its export-friendly formulation). Shapes are static for one batch size (batches of other sizes are
padded). With ``out_resolution`` the image is box-downsampled inside the graph (the cache stores the
student's resolution only), which equals :func:`mobilestylegan.nets.resize.area_downsample` of the full image
(an average pool of an integer factor in the graph).

Validation renders with the PyTorch teacher, or with this renderer in f32 (``data.val_with_renderer``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

PRECISIONS = ("f32", "bf16")


class OpenVINOSynthesis:
    """Callable ``(ws, noise=list) -> img`` running ``synthesis`` through OpenVINO.

    Args:
        synthesis: A synthesis network with ``num_ws``, ``w_dim``, ``noise_shapes`` and
            ``forward(ws, noise=list)`` (teacher or student).
        batch_size: Batch the model is compiled for.
        precision: ``f32`` or ``bf16`` (OpenVINO's ``INFERENCE_PRECISION_HINT``).
        threads: CPU threads for inference (None: OpenVINO's default).
        out_resolution: Box-downsample the image to this size inside the graph (None: full size).
    """

    def __init__(
        self,
        synthesis: torch.nn.Module,
        batch_size: int,
        precision: str = "f32",
        threads: int | None = None,
        out_resolution: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO render precision must be one of {PRECISIONS}, got {precision!r}")
        import openvino as ov

        self.batch_size = batch_size
        wrapper = _Wrapper(synthesis, out_resolution).eval()
        ws = torch.zeros(batch_size, synthesis.num_ws, synthesis.w_dim)
        noise = [torch.zeros(batch_size, *s) for s in synthesis.noise_shapes]
        with warnings.catch_warnings():
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
            chunk = [ws[i : i + self.batch_size]] + [m[i : i + self.batch_size] for m in noise]
            k = chunk[0].shape[0]
            if k < self.batch_size:  # pad to the compiled batch
                chunk = [torch.cat([c, c[:1].expand(self.batch_size - k, *c.shape[1:])]) for c in chunk]
            arrays = [c.detach().float().cpu().contiguous().numpy() for c in chunk]
            outs.append(torch.from_numpy(self.compiled(arrays)[0][:k].copy()))
        return torch.cat(outs).to(ws.device)


class _Wrapper(torch.nn.Module):
    def __init__(self, synthesis: torch.nn.Module, out_resolution: int | None) -> None:
        super().__init__()
        from mobilestylegan.student.synthesis import MobileSynthesisNetwork

        self.lean = isinstance(synthesis, MobileSynthesisNetwork)
        if self.lean:
            from mobilestylegan.student.lean import LeanSynthesis

            synthesis = LeanSynthesis(synthesis, w_input="wplus", noise="input")
        self.synthesis = synthesis
        factor = 1 if out_resolution is None else synthesis.img_resolution // out_resolution
        if factor < 1 or factor * (out_resolution or synthesis.img_resolution) != synthesis.img_resolution:
            raise ValueError(f"out_resolution {out_resolution} must divide the teacher's {synthesis.img_resolution}")
        self.factor = factor

    def forward(self, ws: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        img = self.synthesis(ws, *noise) if self.lean else self.synthesis(ws, noise=list(noise))
        return F.avg_pool2d(img, self.factor) if self.factor > 1 else img
