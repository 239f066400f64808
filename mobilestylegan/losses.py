"""Distillation losses (SPEC section 4): pixel, perceptual, non-saturating GAN with lazy R1, and the
differentiable augmentation in front of the discriminator.

Every loss returns a scalar; weighting the terms against each other (paper: pixel 1.0, perceptual 1.0,
GAN 0.1) is the caller's job, with the weights in ``conf/loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.vgg import VGG16Features

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

def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Area (box average) when shrinking, bilinear (half-pixel centres) when enlarging."""
    h, w = img.shape[-2:]
    if (h, w) == (size, size):
        return img
    if h >= size and w >= size:
        return F.interpolate(img, size=(size, size), mode="area")
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


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
        vgg: Frozen feature extractor from :func:`mobilestylegan.vgg.load_vgg16`.
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

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"PerceptualLoss: shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        pred_feats = self.vgg(_resize(pred, self.size))
        with torch.no_grad():
            target_feats = self.vgg(_resize(target, self.size))
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
    """Differentiable augmentation of discriminator inputs (kornia): flip, affine, resized crop.

    Call it separately on the real and on the fake batch: every sample draws its own parameters, so
    both batches are augmented from the same distribution but never with the same parameters.
    Each of the three transforms is applied to each sample independently with probability ``p``:

    1. horizontal flip (``kornia.augmentation.RandomHorizontalFlip``);
    2. affine: rotation in ``[-degrees, degrees]``, translation up to ``translate`` x the size on
       each axis, isotropic scale in ``scale`` (``RandomAffine``, bilinear, ``padding_mode`` padding);
    3. crop of a random area fraction in ``crop_scale`` and aspect ratio in ``crop_ratio``, resized
       back to the input size (``RandomResizedCrop``, ``cropping_mode="resample"``: one bilinear warp).
       kornia's ``p`` for this transform selects the whole batch at once, so we crop every sample and
       keep the crop for a per-sample Bernoulli(p) mask instead.

    The flip is a reindexing and the rest bilinear resampling with parameters that do not depend on the
    input, so the output is differentiable w.r.t. the input, also twice (generator gradients; R1 with
    ``create_graph`` through it is tested).
    ``p = 0`` returns the input unchanged without drawing random numbers. Works on images in [-1, 1].

    Randomness: kornia samples from torch's global RNG (it accepts no ``torch.Generator``), and so does
    the crop mask here. ``torch.manual_seed(s)`` before a call makes it deterministic (Lightning's
    ``seed_everything`` does that).

    Args:
        p: Per-sample probability of each transform (0 = identity).
        flip: Use the horizontal flip.
        degrees: Maximum absolute rotation in degrees (0 = none).
        translate: Maximum translation as a fraction of width / height (0 = none).
        scale: Range of the affine scale factor ((1, 1) = none).
        crop_scale: Range of the crop's area fraction; None disables the crop.
        crop_ratio: Range of the crop's aspect ratio (width / height).
        padding_mode: How the affine fills outside the image: ``reflection`` (default: no border for D
            to spot), ``border`` or ``zeros``.
    """

    def __init__(self, p: float = 0.5, flip: bool = True, degrees: float = 10.0, translate: float = 0.1,
                 scale: tuple[float, float] = (0.9, 1.1), crop_scale: tuple[float, float] | None = (0.64, 1.0),
                 crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), padding_mode: str = "reflection") -> None:
        super().__init__()
        import kornia.augmentation as K  # heavy import, needed only by training

        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DiffAugment.p must be in [0, 1], got {p}")
        self._p = float(p)
        self.crop_scale = None if crop_scale is None else (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.flip = K.RandomHorizontalFlip(p=self._p) if flip else None
        use_affine = degrees != 0 or translate != 0 or tuple(scale) != (1.0, 1.0)
        self.affine = K.RandomAffine(degrees=float(degrees), translate=(float(translate),) * 2 if translate else None,
                                     scale=(float(scale[0]), float(scale[1])) if tuple(scale) != (1.0, 1.0) else None,
                                     padding_mode=padding_mode, p=self._p) if use_affine else None
        self._crops: dict[tuple[int, int], nn.Module] = {}  # RandomResizedCrop per output size (no state)

    @property
    def p(self) -> float:
        """Per-sample probability of each transform (fixed at construction: kornia keeps its own copy)."""
        return self._p

    def _crop(self, size: tuple[int, int]) -> nn.Module:
        if size not in self._crops:
            import kornia.augmentation as K

            self._crops[size] = K.RandomResizedCrop(size=size, scale=self.crop_scale, ratio=self.crop_ratio,
                                                    cropping_mode="resample", p=1.0)
        return self._crops[size]

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C, H, W]
        if img.ndim != 4:
            raise ValueError(f"DiffAugment expects [N, C, H, W], got {tuple(img.shape)}")
        if self._p == 0:
            return img
        x = img
        if self.flip is not None:
            x = self.flip(x)
        if self.affine is not None:
            x = self.affine(x)
        if self.crop_scale is not None:
            cropped = self._crop((int(x.shape[-2]), int(x.shape[-1])))(x)
            keep = (torch.rand(x.shape[0]) < self._p).to(x.device).view(-1, 1, 1, 1)
            x = torch.where(keep, cropped, x)
        return x

    def extra_repr(self) -> str:
        return f"p={self.p}, crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}"
