"""Fused StyleGAN2 ops: a pure-PyTorch reference and CUDA kernels behind one signature each.

The CUDA kernels are compiled at run time (NVRTC) on their first use on a CUDA tensor, never at
import; see ``teacher/ops/_impl.py`` for how the implementation is chosen and ``status()``.
"""

from teacher.ops._impl import status
from teacher.ops.bias_act import ACTIVATIONS, bias_act
from teacher.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "downsample2d",
    "filter2d",
    "setup_filter",
    "status",
    "upfirdn2d",
    "upsample2d",
]
