"""upfirdn2d on the GPU: launch wrapper and autograd (gradients of any order w.r.t. ``x``).

The gradient of upfirdn2d w.r.t. its input is another upfirdn2d (the adjoint: ``up`` and ``down``
swapped, the filter flipped, the padding mirrored), so backward calls the same autograd Function
and higher orders come for free. There is no gradient w.r.t. the filter.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import torch

from teacher.ops.cuda import _runtime

_BLOCK = (32, 8, 1)  # threads; a tile is a multiple of this
_MAX_SHARED = 48 * 1024  # bytes of dynamic shared memory usable without an opt-in
_MAX_GRID_Z = 65535


class Upfirdn2dParams(ctypes.Structure):
    """Mirrors ``struct Upfirdn2dParams`` in kernels/upfirdn2d.cu (same field order and types)."""

    _fields_ = [("planes", ctypes.c_longlong), ("gain", ctypes.c_double), ("flip_filter", ctypes.c_int)] + [
        (name, ctypes.c_int)
        for name in (
            "in_h",
            "in_w",
            "out_h",
            "out_w",
            "up_x",
            "up_y",
            "down_x",
            "down_y",
            "pad_x0",
            "pad_y0",
            "filter_h",
            "filter_w",
            "tiles_x",
            "tile_out_w",
            "tile_out_h",
            "tile_in_w",
            "tile_in_h",
        )
    ]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """upfirdn2d with the CUDA kernel (normalised arguments; see ``teacher.ops.upfirdn2d``).

    Args:
        x: ``[N, C, H, W]`` CUDA tensor (float16 / bfloat16 are computed in float32).
        f: Filter ``[fh, fw]``, or ``[k]`` applied along W then H with ``gain ** 0.5`` each.
        up: ``(ux, uy)``.
        down: ``(dx, dy)``.
        padding: ``(px0, px1, py0, py1)``; negative values crop.
        flip_filter: Correlate with ``f`` instead of convolving.
        gain: Output scale.
    Returns:
        ``[N, C, (H*uy + py0 + py1 - fh) // dy + 1, (W*ux + px0 + px1 - fw) // dx + 1]``, dtype of ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f.ndim == 1:  # separable: one pass per axis, each with sqrt(gain)
        g = math.sqrt(abs(gain))
        px0, px1, py0, py1 = padding
        x = _Upfirdn2d.apply(
            x, f[None, :], (up[0], 1), (down[0], 1), (px0, px1, 0, 0), flip_filter, math.copysign(g, gain)
        )
        return _Upfirdn2d.apply(x, f[:, None], (1, up[1]), (1, down[1]), (0, 0, py0, py1), flip_filter, g)
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 1-D or 2-D filter, got shape {tuple(f.shape)}")
    return _Upfirdn2d.apply(x, f, tuple(up), tuple(down), tuple(padding), flip_filter, gain)


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        f: torch.Tensor,
        up: tuple[int, int],
        down: tuple[int, int],
        padding: tuple[int, int, int, int],
        flip_filter: bool,
        gain: float,
    ) -> torch.Tensor:
        # x [N, C, H, W], f [fh, fw]
        ctx.save_for_backward(f)
        ctx.args = (x.shape[2], x.shape[3], up, down, padding, flip_filter, gain)
        return _launch(x, f, up, down, padding, flip_filter, gain)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None, None]:
        # grad [N, C, out_h, out_w]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None, None
        (f,) = ctx.saved_tensors
        in_h, in_w, (up_x, up_y), (down_x, down_y), (px0, px1, py0, py1), flip_filter, gain = ctx.args
        fh, fw = f.shape
        out_h, out_w = grad.shape[2], grad.shape[3]
        # Adjoint: zero-insert by `down`, correlate with the reversed taps, keep every `up`-th sample;
        # the padding puts the first tap back on input sample 0 and makes the output [in_h, in_w].
        padding = (
            fw - px0 - 1,
            in_w * up_x - out_w * down_x + px0 - up_x + 1,
            fh - py0 - 1,
            in_h * up_y - out_h * down_y + py0 - up_y + 1,
        )
        grad_x = _Upfirdn2d.apply(grad, f, (down_x, down_y), (up_x, up_y), padding, not flip_filter, gain)
        return grad_x, None, None, None, None, None, None


def _tile(
    out_h: int, out_w: int, fh: int, fw: int, up: tuple[int, int], down: tuple[int, int], itemsize: int
) -> tuple[int, int, int, int]:
    """Output tile (w, h) per block and the staged input rectangle (w, h) it needs, within shared memory."""
    (ux, uy), (dx, dy) = up, down
    tw = _BLOCK[0] * (2 if out_w > _BLOCK[0] else 1)
    th = _BLOCK[1] * (4 if out_h > 2 * _BLOCK[1] else 2 if out_h > _BLOCK[1] else 1)
    while True:
        in_w = ((tw - 1) * dx + fw - 1) // ux + 1
        in_h = ((th - 1) * dy + fh - 1) // uy + 1
        if (in_w * in_h + fh * fw) * itemsize <= _MAX_SHARED:
            return tw, th, in_w, in_h
        if th > _BLOCK[1]:
            th //= 2
        elif tw > _BLOCK[0]:
            tw //= 2
        elif th > 1:  # smaller than the block: some threads idle, but huge filters still fit
            th //= 2
        elif tw > 1:
            tw //= 2
        else:
            raise ValueError(f"upfirdn2d: a {fh}x{fw} filter does not fit the CUDA kernel's shared memory")


def _launch(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    n, c, in_h, in_w = x.shape
    fh, fw = f.shape
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    out_w = (in_w * ux + px0 + px1 - fw) // dx + 1
    out_h = (in_h * uy + py0 + py1 - fh) // dy + 1
    if out_w < 1 or out_h < 1 or min(ux, uy, dx, dy) < 1:
        raise ValueError(
            f"upfirdn2d: invalid output size {out_h}x{out_w} (input {tuple(x.shape)}, filter {fh}x{fw}, "
            f"up={up}, down={down}, padding={padding})"
        )
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc = x.to(dtype).contiguous()
    taps = f.to(device=x.device, dtype=dtype).contiguous()  # [fh, fw]; the kernel flips it and applies the gain
    y = torch.empty([n, c, out_h, out_w], dtype=dtype, device=x.device)
    planes = n * c
    if planes > 0:
        tw, th, tin_w, tin_h = _tile(out_h, out_w, fh, fw, up, down, xc.element_size())
        tiles_x, tiles_y = -(-out_w // tw), -(-out_h // th)
        if tiles_x * tiles_y >= 2**31 or max(in_h, in_w, out_h, out_w) * max(ux, uy, dx, dy) >= 2**30:
            raise ValueError(f"upfirdn2d: image too large for the CUDA kernel ({tuple(x.shape)})")
        params = Upfirdn2dParams(
            planes,
            gain,
            int(flip_filter),
            in_h,
            in_w,
            out_h,
            out_w,
            ux,
            uy,
            dx,
            dy,
            px0,
            py0,
            fh,
            fw,
            tiles_x,
            tw,
            th,
            tin_w,
            tin_h,
        )
        kernel = _runtime.get_kernel(
            "upfirdn2d", "upfirdn2d_f64" if dtype == torch.float64 else "upfirdn2d_f32", x.device
        )
        kernel.launch(
            grid=(tiles_x * tiles_y, 1, min(planes, _MAX_GRID_Z)),
            block=_BLOCK,
            args=[
                ctypes.c_void_p(xc.data_ptr()),
                ctypes.c_void_p(taps.data_ptr()),
                ctypes.c_void_p(y.data_ptr()),
                params,
            ],
            shared_mem=(tin_w * tin_h + fh * fw) * xc.element_size(),
            stream=_runtime.current_stream(x.device),
        )
    return y if y.dtype == x.dtype else y.to(x.dtype)
