"""Our own CUDA kernels for the fused StyleGAN2 ops, compiled at run time with NVRTC.

No nvcc, C++ toolchain or torch C++ extension: the sources in ``kernels/*.cu`` are compiled by
NVRTC (through ctypes) for the GPU in use, cached on disk under
``${MOBILESTYLEGAN_CACHE:-~/.cache/mobilestylegan}/kernels``, loaded into torch's CUDA context
and launched on torch's current stream through the CUDA driver API (ctypes again).

Importing this package touches neither CUDA, NVRTC nor the disk. ``teacher.ops`` chooses between
these kernels and the reference (``teacher/ops/_impl.py``); these functions take already
normalised arguments and raise instead of falling back.

- ``build(op)``: compile / load ``"upfirdn2d"`` or ``"bias_act"`` for the current device.
- ``upfirdn2d(x, f, up, down, padding, flip_filter, gain)`` and
  ``bias_act(x, b, dim, act, alpha, gain, clamp)``: the ops, differentiable (bias_act to second
  order, upfirdn2d to any order).
- ``compile_ptx(arch)``: compile every source to PTX without a GPU (CI).
- ``status()``: NVRTC / driver found, cache folder, what is built.
- ``selftest_file(op, device, dtype)``: where the self-test verdict of a built op is kept.
"""

from teacher.ops.cuda._bias_act import bias_act
from teacher.ops.cuda._errors import CudaBuildError, CudaDriverError
from teacher.ops.cuda._runtime import build, compile_ptx, selftest_file, status
from teacher.ops.cuda._upfirdn2d import upfirdn2d

__all__ = [
    "CudaBuildError",
    "CudaDriverError",
    "bias_act",
    "build",
    "compile_ptx",
    "selftest_file",
    "status",
    "upfirdn2d",
]
