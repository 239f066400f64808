"""upfirdn2d: up-sample, FIR-filter and down-sample a batch of images in one op.

Definition (what every implementation must compute): insert ``up-1`` zeros after every input
sample, pad by ``padding`` (negative values crop), convolve with ``f`` (a true convolution; with
``flip_filter=True`` a correlation), scale by ``gain``, keep every ``down``-th sample starting at 0.

The reference implementation never materialises the zero-inserted image: up-sampling is a
depthwise transposed convolution (stride ``up``) and down-sampling a depthwise strided
convolution; a separable (1-D) filter runs as two 1-D passes. Everything is plain differentiable
PyTorch, so gradients of any order come from autograd. ``upfirdn2d_naive`` is the literal
definition, kept for benchmarks and as a cross-check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from teacher.ops import _impl

IntPair = int | Sequence[int]
FOLD_CHANNELS = 4  # up-sample inputs with at most this many channels as a batch of 1-channel images


def _pair(v: IntPair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        out = (v, v)
    else:
        out = tuple(int(t) for t in v)
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or [x, y], got {v!r}")
    return out  # type: ignore[return-value]


def _parse_padding(padding: IntPair) -> tuple[int, int, int, int]:
    """int -> all sides; [x, y] -> (x, x, y, y); [x0, x1, y0, y1] as given."""
    if isinstance(padding, int):
        return (padding,) * 4  # type: ignore[return-value]
    p = [int(t) for t in padding]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def setup_filter(
    f: Sequence[float] | torch.Tensor | None,
    device: torch.device | str = "cpu",
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps into a float32 tensor for :func:`upfirdn2d`.

    Args:
        f: 1-D taps ``[k]`` or 2-D ``[fh, fw]``; None means the identity ``[1]``.
        device: Where to put the result.
        normalize: Scale so the taps sum to 1 (before ``gain``).
        flip_filter: Flip the taps (so that upfirdn2d correlates instead of convolving).
        gain: Overall gain of the filter (a 1-D filter gets ``gain ** 0.5`` per axis... once
            expanded to 2-D it integrates to ``gain``).
        separable: Keep a 1-D filter 1-D (applied per axis). Default: keep 1-D filters of 8+ taps
            separable and expand shorter ones to their 2-D outer product.
    Returns:
        ``[k]`` (separable) or ``[fh, fw]`` float32 tensor.
    """
    if f is None:
        f = [1.0]
    t = torch.as_tensor(f, dtype=torch.float32)
    if t.ndim == 0:
        t = t[None]
    if t.ndim not in (1, 2) or t.numel() == 0:
        raise ValueError(f"filter must be 1-D or 2-D and non-empty, got shape {tuple(t.shape)}")
    if separable is None:
        separable = t.ndim == 1 and t.numel() >= 8
    if t.ndim == 1 and not separable:
        t = t.outer(t)
    if normalize:
        t = t / t.sum()
    if flip_filter:
        t = t.flip(list(range(t.ndim)))
    t = t * (gain ** (t.ndim / 2))
    return t.to(device=device)


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a filter tensor; None is the 1x1 identity."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[-1], f.shape[-2]


def _check(x: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d expects a 1-D or 2-D filter, got shape {tuple(f.shape)}")
    return f


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 1,
    down: IntPair = 1,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Up-sample, pad, FIR-filter and down-sample ``x``.

    Args:
        x: Images ``[N, C, H, W]``.
        f: Filter ``[fh, fw]`` or separable ``[k]`` (see :func:`setup_filter`), or None for identity.
        up: Up-sampling factor, int or ``[ux, uy]``.
        down: Down-sampling factor, int or ``[dx, dy]``.
        padding: int, ``[px, py]`` or ``[px0, px1, py0, py1]``; negative values crop.
        flip_filter: Correlate with ``f`` instead of convolving.
        gain: Multiply the output by this (a 1-D filter gets ``gain ** 0.5`` per axis).
        impl: ``"ref"``, ``"cuda"`` or ``"auto"`` (default: ``$MOBILESTYLEGAN_OPS`` or auto).
    Returns:
        ``[N, C, (H*uy + py0 + py1 - fh) // dy + 1, (W*ux + px0 + px1 - fw) // dx + 1]``.
    """
    f = _check(x, f)
    ux, uy = _pair(up, "up")
    dx, dy = _pair(down, "down")
    pad = _parse_padding(padding)
    if min(ux, uy, dx, dy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up!r}, down={down!r}")
    fw, fh = _filter_size(f)
    out_w = (x.shape[3] * ux + pad[0] + pad[1] - fw) // dx + 1
    out_h = (x.shape[2] * uy + pad[2] + pad[3] - fh) // dy + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(
            f"upfirdn2d output would be empty ({out_h}x{out_w}) for input {tuple(x.shape)}, "
            f"filter {fh}x{fw}, up={up}, down={down}, padding={pad}"
        )
    if _impl.choose("upfirdn2d", x, impl) == "cuda":
        from teacher.ops import cuda

        return cuda.upfirdn2d(x, f, (ux, uy), (dx, dy), pad, bool(flip_filter), float(gain))
    return upfirdn2d_ref(x, f, (ux, uy), (dx, dy), pad, bool(flip_filter), float(gain))


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Reference: depthwise (transposed) convolutions, separable when ``f`` is 1-D."""
    f = f.to(x.dtype)
    if f.ndim == 1:
        g = gain**0.5
        x = _pass(x, f[None, :] * g, (up[0], 1), (down[0], 1), (pad[0], pad[1], 0, 0), flip_filter)
        return _pass(x, f[:, None] * g, (1, up[1]), (1, down[1]), (0, 0, pad[2], pad[3]), flip_filter)
    return _pass(x, f * gain, up, down, pad, flip_filter)


def _pass(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
    flip_filter: bool,
) -> torch.Tensor:
    """One 2-D depthwise pass with filter ``f`` [fh, fw]."""
    n, c, h, w = x.shape
    fh, fw = f.shape
    ux, uy = up
    px0, px1, py0, py1 = pad
    if ux == 1 and uy == 1:
        # Pad/crop, then a strided correlation (== convolution followed by subsampling).
        x = F.pad(x, [px0, px1, py0, py1])
        weight = f if flip_filter else f.flip([0, 1])
        weight = weight[None, None].expand(c, 1, fh, fw)  # [C, 1, fh, fw]
        return F.conv2d(x, weight, stride=(down[1], down[0]), groups=c)
    # A transposed conv with stride `up` is "insert zeros, then convolve" without the zeros.
    # Its full output T[t] = sum_k f[k] Z[t - k]; the definition's output o is T[o + K - 1 - p0].
    weight = (f.flip([0, 1]) if flip_filter else f)[None, None]  # [1, 1, fh, fw]
    if c <= FOLD_CHANNELS:
        # Few channels (ToRGB images): one single-channel transposed conv over N*C images is faster on a CPU
        # than a depthwise one.
        x = F.conv_transpose2d(x.reshape(n * c, 1, h, w), weight, stride=(uy, ux))
        x = x.reshape(n, c, x.shape[2], x.shape[3])
    else:
        x = F.conv_transpose2d(x, weight.expand(c, 1, fh, fw), stride=(uy, ux), groups=c)
    # x: [N, C, (H-1)*uy+fh, (W-1)*ux+fw]
    x = F.pad(x, [px0 - fw + 1, px1 + ux - fw, py0 - fh + 1, py1 + uy - fh])
    if down != (1, 1):
        x = x[:, :, :: down[1], :: down[0]]
    return x


def upfirdn2d_naive(
    x: torch.Tensor,
    f: torch.Tensor,
    up: IntPair = 1,
    down: IntPair = 1,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """The literal definition: zero-insert, pad/crop, full 2-D convolution, subsample."""
    f = _check(x, f).to(x.dtype)
    ux, uy = _pair(up, "up")
    dx, dy = _pair(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    if f.ndim == 1:
        f = f.outer(f)
    n, c, h, w = x.shape
    z = x.new_zeros([n, c, h, uy, w, ux])
    z[:, :, :, 0, :, 0] = x
    z = z.reshape(n, c, h * uy, w * ux)
    z = F.pad(z, [px0, px1, py0, py1])
    weight = (f if flip_filter else f.flip([0, 1])) * gain
    z = F.conv2d(z, weight[None, None].repeat(c, 1, 1, 1), groups=c)
    return z[:, :, ::dy, ::dx]


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Filter ``x`` with ``f``, keeping its size when ``padding=0`` (extra padding is added on top)."""
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 2,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Up-sample by ``up`` with anti-imaging filter ``f``; output is exactly ``up`` times larger.

    The filter gain is multiplied by ``ux * uy`` to make up for the inserted zeros.
    """
    ux, uy = _pair(up, "up")
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    p = [px0 + (fw + ux - 1) // 2, px1 + (fw - ux) // 2, py0 + (fh + uy - 1) // 2, py1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=(ux, uy), padding=p, flip_filter=flip_filter, gain=gain * ux * uy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: IntPair = 2,
    padding: IntPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Anti-alias with ``f`` and down-sample by ``down``; output is exactly ``down`` times smaller."""
    dx, dy = _pair(down, "down")
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    p = [px0 + (fw - dx + 1) // 2, px1 + (fw - dx) // 2, py0 + (fh - dy + 1) // 2, py1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=(dx, dy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
