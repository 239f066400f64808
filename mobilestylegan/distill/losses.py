"""Distillation losses (SPEC section 4): pixel, perceptual, non-saturating GAN with lazy R1, and the
differentiable augmentation in front of the discriminator.

Every loss returns a scalar; weighting the terms against each other (paper: pixel 1.0, perceptual 1.0,
GAN 0.1) is the caller's job, with the weights in ``conf/loss``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.nets.resize import resize_square
from mobilestylegan.nets.vgg import VGG16Features

__all__ = [
    "DiffAugment", "PerceptualLoss", "d_logistic_loss", "g_nonsaturating_loss", "lazy_r1_loss", "pixel_loss",
    "r1_penalty",
]


# ----------------------------------------------------------------------------------------------- pixel

def _l1_l2(pred: torch.Tensor, target: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pixel_loss: {what} shapes differ: prediction {tuple(pred.shape)}, "
                         f"target {tuple(target.shape)}")
    diff = pred - target
    return diff.abs().mean(), diff.square().mean()


def pixel_loss(pred_wavelets: list[torch.Tensor], target_wavelets: list[torch.Tensor], pred_img: torch.Tensor,
               target_img: torch.Tensor, l1: float = 1.0,
               l2: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multi-scale pixel loss on the student's wavelet heads plus its final RGB image.

    With ``L1(a, b) = mean|a - b|`` and ``L2(a, b) = mean (a - b)^2`` (means over every element: batch,
    channels, pixels) and K heads (``[N, 12, r, r]`` each, any resolutions)::

        wavelet = (1 / K) * sum_k [ l1 * L1(pred_k, target_k) + l2 * L2(pred_k, target_k) ]
        rgb     = l1 * L1(pred_img, target_img) + l2 * L2(pred_img, target_img)
        total   = wavelet + rgb

    So every head weighs the same whatever its resolution (mean over heads of per-head means), and the
    RGB image counts as much as all heads together. K = 0 (no auxiliary heads) gives ``wavelet = 0``.

    Args:
        pred_wavelets / target_wavelets: Per-head wavelet coefficients, same order and shapes.
        pred_img / target_img: Final images ``[N, 3, R, R]``.
        l1 / l2: Weights of the L1 and L2 terms.

    Returns:
        ``(total, parts)``: ``parts`` holds detached unweighted means for logging (``wavelet_l1``,
        ``wavelet_l2``: means over heads; ``rgb_l1``, ``rgb_l2``) and the weighted ``wavelet`` and ``rgb``.
    """
    if len(pred_wavelets) != len(target_wavelets):
        raise ValueError(f"pixel_loss: {len(pred_wavelets)} predicted heads but {len(target_wavelets)} targets")
    zero = pred_img.new_zeros(())
    w_l1, w_l2 = zero, zero
    for k, (p, t) in enumerate(zip(pred_wavelets, target_wavelets)):
        a, b = _l1_l2(p, t, f"head {k} wavelet")
        w_l1, w_l2 = w_l1 + a, w_l2 + b
    if pred_wavelets:
        w_l1, w_l2 = w_l1 / len(pred_wavelets), w_l2 / len(pred_wavelets)
    rgb_l1, rgb_l2 = _l1_l2(pred_img, target_img, "image")
    wavelet = l1 * w_l1 + l2 * w_l2
    rgb = l1 * rgb_l1 + l2 * rgb_l2
    parts = {"wavelet_l1": w_l1, "wavelet_l2": w_l2, "rgb_l1": rgb_l1, "rgb_l2": rgb_l2, "wavelet": wavelet,
             "rgb": rgb}
    return wavelet + rgb, {k: v.detach() for k, v in parts.items()}


# ------------------------------------------------------------------------------------------ perceptual

class PerceptualLoss(nn.Module):
    """Mean over the four VGG16 layers (relu1_2, relu2_2, relu3_3, relu4_3) of the per-layer L1 distance::

        loss = (1 / 4) * sum_l mean|phi_l(resize(pred)) - phi_l(resize(target))|

    Both images (``[N, 3, H, W]`` in [-1, 1]) are resized to ``size`` x ``size`` first: area
    interpolation (an exact box filter at the power-of-two ratios used here, e.g. 1024 -> 256) when
    shrinking, bilinear when enlarging (small students). Target features are computed without
    gradients; gradients flow through the frozen VGG to ``pred``. The VGG stays in eval mode whatever
    ``train()`` says. Its weights are a submodule, so they follow ``.to(device)`` and appear in this
    module's ``state_dict`` (``vgg.features.*``).

    Args:
        vgg: Frozen feature extractor from :func:`mobilestylegan.nets.vgg.load_vgg16`.
        size: Side of the VGG input (paper: 256).
    """

    def __init__(self, vgg: VGG16Features, size: int = 256) -> None:
        super().__init__()
        if size < 8:
            raise ValueError(f"PerceptualLoss.size must be >= 8 (relu4_3 is at 1/8 resolution), got {size}")
        self.vgg = vgg.eval().requires_grad_(False)
        self.size = size

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss (``reduction="mean"``, a scalar) or the per-image distances ``[N]`` (``"none"``), whose
        mean is the loss."""
        if pred.shape != target.shape:
            raise ValueError(f"PerceptualLoss: shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"PerceptualLoss: reduction must be 'mean' or 'none', got {reduction!r}")
        pred_feats = self.vgg(resize_square(pred, self.size))
        with torch.no_grad():
            target_feats = self.vgg(resize_square(target, self.size))
        if reduction == "none":
            return torch.stack([(p - t).abs().flatten(1).mean(1) for p, t in zip(pred_feats, target_feats)]).mean(0)
        per_layer = [F.l1_loss(p, t) for p, t in zip(pred_feats, target_feats)]
        return torch.stack(per_layer).mean()


# ------------------------------------------------------------------------------------------------- GAN

def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator's non-saturating loss ``mean softplus(-D(G(w)))`` (= -log sigmoid(D(fake)))."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator's logistic loss ``mean softplus(D(fake)) + mean softplus(-D(real))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_img: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty ``mean_n ||d sum(D(x)) / d x_n||^2`` (squared norm per sample, mean over the batch).

    The gradient is taken with ``create_graph=True``, so ``penalty.backward()`` reaches D's weights
    (double backward through D: our ``upfirdn2d`` / ``bias_act`` support it).

    Args:
        real_img: The tensor the gradient is taken w.r.t. (``requires_grad=True``), ``[N, C, H, W]``. With
            augmentation, pass the *non-augmented* real batch and compute
            ``real_logits = D(augment(real_img))``: the gradient then flows back through the augmentation
            (StyleGAN2-ADA's convention; :class:`DiffAugment` supports the double backward). Without
            augmentation, ``real_logits = D(real_img)``.
        real_logits: D's output for those images, ``[N, 1]`` or ``[N]``.
    """
    if not real_img.requires_grad:
        raise ValueError("r1_penalty: real_img must require grad (call real_img.requires_grad_() before D)")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def lazy_r1_loss(penalty: torch.Tensor, gamma: float = 10.0, interval: int = 16) -> torch.Tensor:
    """Weight of the lazily applied R1 term: ``penalty * gamma / 2 * interval``.

    StyleGAN2 (Karras et al. 2020, "lazy regularization") evaluates R1 only every ``interval`` D steps
    and multiplies it by ``interval`` so that its expected contribution per step matches ``gamma / 2 *
    penalty`` evaluated every step. (StyleGAN2 also rescales Adam's lr and betas by
    ``interval / (interval + 1)`` for D; that belongs to the optimizer setup, not here.)
    """
    return penalty * (gamma / 2 * interval)


# ---------------------------------------------------------------------------------------- augmentation

class DiffAugment(nn.Module):
    """Differentiable augmentation of discriminator inputs: flip, affine, resized crop, as one warp.

    Each of the three transforms is applied to each sample independently with probability ``p``:

    1. horizontal flip;
    2. affine: rotation in ``[-degrees, degrees]``, translation up to ``translate`` x the size on each
       axis, isotropic scale in ``scale``;
    3. crop of a random area fraction in ``crop_scale`` and aspect ratio (width / height, log-uniform) in
       ``crop_ratio`` at a uniform position, resized back to the input size.

    The three are composed into one affine map per sample and applied with a single bilinear
    ``grid_sample`` (``padding_mode`` outside the image), so an augmented image is resampled once, not
    three times (StyleGAN2-ADA composes its geometric augmentations the same way). A sample that draws
    none of them is returned unchanged. The output is differentiable w.r.t. the input, also twice
    (generator gradients; R1 with ``create_graph`` through it is tested).

    Randomness: every sample draws its parameters from a CPU ``torch.Generator`` the caller passes (11
    uniforms per sample, whatever ``p``), so a sample's augmentation does not depend on the batch it is
    in, the global RNG is never touched, and a distributed run augments each sample as a single process
    would. Call it with separate generators for the real and the fake batch. ``p = 0`` returns the input
    without drawing anything. Works on images in [-1, 1].

    Args:
        p: Per-sample probability of each transform (0 = identity).
        flip: Use the horizontal flip.
        degrees: Maximum absolute rotation in degrees (0 = none).
        translate: Maximum translation as a fraction of width / height (0 = none).
        scale: Range of the affine scale factor ((1, 1) = none).
        crop_scale: Range of the crop's area fraction; None disables the crop.
        crop_ratio: Range of the crop's aspect ratio (width / height).
        padding_mode: ``grid_sample`` padding outside the image: ``reflection`` (default: no border for D
            to spot), ``border`` or ``zeros``.
    """

    DRAWS = 11  # uniforms per sample: flip, affine (on, angle, tx, ty, scale), crop (on, area, ratio, x, y)

    def __init__(self, p: float = 0.5, flip: bool = True, degrees: float = 10.0, translate: float = 0.1,
                 scale: tuple[float, float] = (0.9, 1.1), crop_scale: tuple[float, float] | None = (0.64, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), padding_mode: str = "reflection") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DiffAugment.p must be in [0, 1], got {p}")
        if padding_mode not in ("reflection", "border", "zeros"):
            raise ValueError(f"DiffAugment.padding_mode must be reflection, border or zeros, got {padding_mode!r}")
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"DiffAugment.crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        self._p = float(p)
        self.flip = bool(flip)
        self.degrees, self.translate = float(degrees), float(translate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.crop_scale = None if crop_scale is None else (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.padding_mode = padding_mode

    @property
    def p(self) -> float:
        """Per-sample probability of each transform."""
        return self._p

    def matrices(self, generators: torch.Generator | list[torch.Generator], n: int, height: int, width: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(theta [n, 2, 3], changed [n])``: per sample the map from output to input coordinates
        (``F.affine_grid``'s normalised convention) and whether any transform was drawn. ``generators`` is
        one generator per sample, or one generator that the samples draw from in turn."""
        gens = generators if isinstance(generators, (list, tuple)) else [generators] * n
        if len(gens) != n:
            raise ValueError(f"DiffAugment: {len(gens)} generators for {n} samples")
        u = torch.stack([torch.rand(self.DRAWS, generator=g, dtype=torch.float64) for g in gens])  # [n, 11]
        p, eye = self._p, torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        flip_on = (u[:, 0] < p) & self.flip
        flip = eye.clone()
        flip[:, 0, 0] = torch.where(flip_on, -1.0, 1.0)
        # Affine, forward (input -> output) in pixel-aspect-corrected normalised coordinates.
        affine_on = (u[:, 1] < p) & (self.degrees != 0 or self.translate != 0 or self.scale != (1.0, 1.0))
        angle = torch.deg2rad((2 * u[:, 2] - 1) * self.degrees)
        zoom = self.scale[0] + u[:, 5] * (self.scale[1] - self.scale[0])
        aspect = torch.tensor([[width / 2, 0, 0], [0, height / 2, 0], [0, 0, 1]], dtype=torch.float64)
        rot = eye.clone()
        rot[:, 0, 0], rot[:, 0, 1] = torch.cos(angle) * zoom, -torch.sin(angle) * zoom
        rot[:, 1, 0], rot[:, 1, 1] = torch.sin(angle) * zoom, torch.cos(angle) * zoom
        rot = torch.linalg.inv(aspect) @ rot @ aspect
        rot[:, 0, 2] = 2 * self.translate * (2 * u[:, 3] - 1)
        rot[:, 1, 2] = 2 * self.translate * (2 * u[:, 4] - 1)
        affine_inv = torch.where(affine_on[:, None, None], torch.linalg.inv(rot), eye)
        # Resized crop: output coordinates -> coordinates inside the crop window.
        crop = eye.clone()
        crop_on = torch.zeros(n, dtype=torch.bool)
        if self.crop_scale is not None:
            crop_on = u[:, 6] < p
            area = self.crop_scale[0] + u[:, 7] * (self.crop_scale[1] - self.crop_scale[0])
            lo, hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
            ratio = torch.exp(lo + u[:, 8] * (hi - lo))
            w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # fractions
            cx, cy = -1 + w + 2 * u[:, 9] * (1 - w), -1 + h + 2 * u[:, 10] * (1 - h)  # window centre
            crop[:, 0, 0], crop[:, 1, 1], crop[:, 0, 2], crop[:, 1, 2] = w, h, cx, cy
            crop = torch.where(crop_on[:, None, None], crop, eye)
        theta = flip @ affine_inv @ crop  # output -> crop window -> before the affine -> before the flip
        return theta[:, :2].float(), flip_on | affine_on | crop_on

    def forward(self, img: torch.Tensor, generators: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """``img [N, C, H, W] -> [N, C, H, W]``; ``generators``: one CPU generator per sample (or one shared)."""
        if img.ndim != 4:
            raise ValueError(f"DiffAugment expects [N, C, H, W], got {tuple(img.shape)}")
        if self._p == 0:
            return img
        n, _, h, w = img.shape
        theta, changed = self.matrices(generators, n, h, w)
        if not bool(changed.any()):
            return img
        theta = theta.to(img.device, img.dtype)
        grid = F.affine_grid(theta, list(img.shape), align_corners=False)
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)
        return torch.where(changed.to(img.device).view(-1, 1, 1, 1), warped, img)

    def extra_repr(self) -> str:
        return (f"p={self.p}, flip={self.flip}, degrees={self.degrees}, translate={self.translate}, "
                f"scale={self.scale}, crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}")
