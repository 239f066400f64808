"""Distillation losses: pixel, perceptual, non-saturating GAN with lazy R1 (the augmentation in front of the
discriminator is :mod:`mobilestylegan.distill.augment`).

Every loss returns a scalar; weighting the terms against each other (paper: pixel 1.0, perceptual 1.0,
GAN 0.1) is the caller's job, with the weights in ``conf/loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.nets.resize import resize_square
from mobilestylegan.nets.vgg import VGG16Features

__all__ = [
    "PerceptualLoss",
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "lazy_r1_loss",
    "pixel_loss",
    "r1_penalty",
]


# ----------------------------------------------------------------------------------------------- pixel


def _l1_l2(pred: torch.Tensor, target: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(
            f"pixel_loss: {what} shapes differ: prediction {tuple(pred.shape)}, target {tuple(target.shape)}"
        )
    diff = pred - target
    return diff.abs().mean(), diff.square().mean()


def pixel_loss(
    pred_wavelets: list[torch.Tensor],
    target_wavelets: list[torch.Tensor],
    pred_img: torch.Tensor,
    target_img: torch.Tensor,
    l1: float = 1.0,
    l2: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
    parts = {"wavelet_l1": w_l1, "wavelet_l2": w_l2, "rgb_l1": rgb_l1, "rgb_l2": rgb_l2, "wavelet": wavelet, "rgb": rgb}
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

    def train(self, mode: bool = True) -> PerceptualLoss:
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
