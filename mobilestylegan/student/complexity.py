"""Parameter and MAC counts with their conventions stated.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), which sees functional
convolutions too (hook-based counters such as thop/ptflops report ~0 for modulated convs).
Two conventions differ only for transposed convolutions (the teacher's up-sampling convs):

- ``macs``: each op's true multiply-accumulates; a stride-2 transposed conv is counted on its input
  grid (what FlopCounterMode reports). StyleGAN2 config-f at 1024: ~75.4 G.
- ``macs_paper``: transposed convs counted as dense convs on their 2x output grid (4x), the
  convention behind the papers' "143.15 GMAC" for StyleGAN2 at 1024.
The MobileStyleGAN paper's "15.09 GMAC" for the student is FLOPs (2 x 7.545 G MACs, every head
included).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(fn: Callable[[], Any]) -> dict[str, float]:
    """Run ``fn()`` under FlopCounterMode; return ``macs``, ``macs_paper`` and ``transposed_macs``.

    Parameters must not require grad inside ``fn`` (FlopCounterMode's module tracker otherwise
    needs autograd graph nodes); call ``module.requires_grad_(False)`` first.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    total = counter.get_total_flops() / 2
    recorder = _TransposedConvRecorder()  # FlopCounterMode does not expose per-op shapes: run again
    with recorder:
        fn()
    return {"macs": total, "transposed_macs": recorder.macs, "macs_paper": total + 3 * recorder.macs}


class _TransposedConvRecorder(torch.overrides.TorchFunctionMode):
    """Sums the MACs of stride-2 transposed convolutions as FlopCounterMode counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0.0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.nn.functional.conv_transpose2d:
            x, w = args[0], args[1]
            stride = kwargs.get("stride", args[3] if len(args) > 3 else 1)
            if (stride if isinstance(stride, int) else max(stride)) > 1:
                # weight [C_in, C_out / groups, kh, kw]: every input pixel feeds C_out/groups * kh * kw outputs.
                n, c_in, h, wd = x.shape
                self.macs += float(n * c_in * w.shape[1] * w.shape[2] * w.shape[3] * h * wd)
        return func(*args, **kwargs)
