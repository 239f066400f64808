"""Projection: the latent (and optionally the noise) under which a generator renders a given image.

The StyleGAN2 projector's schedule: start at the mean w (of ``w_avg_samples`` mapped latents), Adam with a learning
rate ramped up over the first 5% and down (cosine) over the last 25% of the steps, optionally a random perturbation
of the latent (``w_noise * w_std``, decaying to zero at 75% of the steps), and, when the noise maps are optimised,
their lag-1 autocorrelation as a regulariser (weight 1e5) with the maps renormalised after every step. The loss
compares render and target at ``loss_resolution`` (box-downsampled): MSE on [0, 1] plus
``msssim_weight * (1 - MS-SSIM)``, plus ``perceptual_weight`` times a perceptual distance when one is given (the CLI
passes LPIPS-VGG when its weights are found).

The defaults are set for CPU budgets of tens to a few hundred steps, not the projector's 1000: peak learning rate
0.03 instead of 0.1 and no perturbation (both made 60-step projections worse), and in W+ the first third of the steps
optimise one shared w before each live entry moves on its own (W finds the face, W+ the details; this mattered most).
``lr=0.1, w_noise=0.05, w_steps=0`` is the projector's recipe.

Only the W+ entries the generator reads are optimised (:func:`~mobilestylegan.edit.latents.live_ws`); a saved W+
latent fills each dead entry with its nearest live neighbour below, which renders the same.

Warm-up (students only): the first ``proxy_steps`` steps run a truncated student, the blocks up to the
``proxy_resolution`` features followed by a 1x1 head fitted by least squares to the full renders of a few seeded
latents, and compare at ``proxy_resolution`` with MSE; the coarse pose, shape and colours settle there at a
fraction of the cost of a full step, and the full steps refine (no perturbation, ``refine_lr`` ramped down by a
cosine).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from mobilestylegan.edit.latents import live_ws, mapped_w
from mobilestylegan.edit.losses import ms_ssim, noise_regularizer
from mobilestylegan.errors import UsageError
from mobilestylegan.student.sampling import seeded_z
from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from teacher.numerics import psnr_db

SPACES = ("w", "wplus")


@dataclass
class ProjectOptions:
    space: str = "wplus"
    steps: int = 200
    loss_resolution: int = 256
    lr: float = 0.03
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_noise: float = 0.0
    w_noise_ramp: float = 0.75
    optimize_noise: bool = False
    noise_regularize: float = 1e5
    msssim_weight: float = 1.0
    w_steps: int | None = None  # wplus: steps on one shared w first; None: a third of the steps
    perceptual_weight: float = 1.0
    identity_weight: float = 0.0
    proxy_steps: int = 0
    proxy_resolution: int = 128
    refine_lr: float = 0.02
    w_avg_samples: int = 10_000
    seed: int = 0

    @property
    def shared_w_steps(self) -> int:
        if self.space != "wplus":
            return 0
        return self.steps // 3 if self.w_steps is None else self.w_steps

    def check(self, G: torch.nn.Module) -> None:
        if self.space not in SPACES:
            raise UsageError(f"space must be one of {', '.join(SPACES)}; got {self.space!r}")
        if self.steps < 1 or not 0 <= self.proxy_steps <= self.steps:
            raise UsageError(f"steps must be >= 1 and proxy steps within 0..steps; got {self.steps}, "
                             f"{self.proxy_steps}")
        if not 0 <= self.shared_w_steps <= self.steps or self.lr <= 0 or self.w_noise < 0:
            raise UsageError(f"w steps must be within 0..steps, the learning rate > 0 and the latent perturbation "
                             f">= 0; got {self.w_steps}, {self.lr}, {self.w_noise}")
        if self.proxy_steps and not isinstance(G.synthesis, MobileSynthesisNetwork):
            raise UsageError("the proxy warm-up is defined for students (MobileStyleGAN); use --proxy-steps 0")


@dataclass
class Projection:
    ws: torch.Tensor  # [1, num_ws, w_dim], dead entries filled
    noise: list[torch.Tensor] | None  # the optimised maps, or None (the generator's constant maps)
    image: torch.Tensor  # [1, 3, R, R] the final render
    losses: list[float] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    psnr_db: float = 0.0
    msssim: float = 0.0
    steps_done: int = 0
    seconds: float = 0.0
    live: list[int] = field(default_factory=list)
    interrupted: bool = False


def _downsample(img: torch.Tensor, size: int) -> torch.Tensor:
    return img if img.shape[-1] <= size else F.interpolate(img, size=(size, size), mode="area")


def w_statistics(G: torch.nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean w ``[1, w_dim]`` and the RMS distance to it of ``n`` mapped seeded latents."""
    w = mapped_w(G, n, seed)
    avg = w.mean(0, keepdim=True)
    return avg.float(), float(((w - avg) ** 2).sum(1).mean().sqrt())


class _Proxy:
    """Blocks up to the ``resolution`` features + a least-squares 1x1 head: an image at that resolution."""

    def __init__(self, G: torch.nn.Module, resolution: int, fit_samples: int = 4, seed: int = 12345) -> None:
        syn = G.synthesis
        res = [8 * 2**i for i in range(len(syn.layers))]
        if resolution not in res[:-1]:
            raise UsageError(f"proxy resolution must be one of {res[:-1]} for this {G.img_resolution}px student; "
                             f"got {resolution}")
        self.syn, self.blocks, self.resolution = syn, res.index(resolution) + 1, resolution
        with torch.no_grad():
            w = G.mapping.embed(seeded_z(list(range(seed, seed + fit_samples)), G.z_dim))
            feats, targets = [], []
            for i in range(fit_samples):
                ws = w[i:i + 1, None].expand(-1, syn.num_ws, -1)
                feats.append(self.features(ws, None))
                targets.append(_downsample(syn(ws, noise_mode="const", inference=True), resolution))
            x = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in feats]).double()
            y = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, 3) for t in targets]).double()
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
            # Normal equations in float64 (C + 1 unknowns per colour; a tiny ridge keeps dead channels harmless).
            gram = x.T @ x
            gram += 1e-8 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
            sol = torch.linalg.solve(gram, x.T @ y).float()  # [C + 1, 3]
        self.weight, self.bias = sol[:-1].t().contiguous()[:, :, None, None], sol[-1]

    def features(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        syn = self.syn
        maps = noise if noise is not None else syn.make_noise(ws.shape[0], "const")
        x = syn.input.input.expand(ws.shape[0], -1, -1, -1)
        x = syn.conv1(x, ws[:, 0], maps[0])
        for i, block in enumerate(syn.layers[:self.blocks]):
            x, _ = block(x, ws[:, 3 * i + 1:3 * i + 4], maps[1 + 2 * i:3 + 2 * i], head=False)
        return x

    def __call__(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        return F.conv2d(self.features(ws, noise), self.weight, self.bias)


def project(G: torch.nn.Module, target: torch.Tensor, opts: ProjectOptions,
            on_step: Callable[[int, float, str], None] | None = None,
            stop: Callable[[], bool] | None = None,
            perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
            identity: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Projection:
    """Project ``target`` (``[1, 3, R, R]`` in [-1, 1], R the generator's resolution) into ``G``'s latent space.

    ``perceptual(a, b) -> [N]`` (images in [-1, 1] at the loss resolution), when given, adds
    ``opts.perceptual_weight`` times its value to the full steps' loss; ``identity(render) -> scalar`` (the full
    render in [-1, 1], e.g. :class:`~mobilestylegan.edit.faces.IdentityLoss`) adds ``opts.identity_weight`` times its.

    ``on_step(step, loss, phase)`` is called after each step; ``stop()`` returning True (or Ctrl-C) ends the
    optimisation early, and the result so far is returned with ``interrupted`` set.
    """
    opts.check(G)
    R = G.img_resolution
    if tuple(target.shape) != (1, 3, R, R):
        raise UsageError(f"the target must be [1, 3, {R}, {R}] (the generator's resolution); got {list(target.shape)}")
    t0 = time.perf_counter()
    G.requires_grad_(False)
    live = live_ws(G)
    w_avg, w_std = w_statistics(G, opts.w_avg_samples, opts.seed)
    res = min(opts.loss_resolution, R)
    goal = _downsample(target.float(), res)
    goal01 = (goal + 1) / 2
    # W+ with w_steps: one shared w first, then each live entry from there (a fresh Adam state).
    w_steps = opts.shared_w_steps
    n_opt = 1 if opts.space == "w" or w_steps else len(live)
    latent = w_avg[:, None].repeat(1, n_opt, 1).clone().requires_grad_(True)
    params = [latent]
    noise = None
    g = torch.Generator().manual_seed(opts.seed)
    if opts.optimize_noise:
        noise = [torch.randn(s, generator=g)[None].requires_grad_(True) for s in G.synthesis.noise_shapes]
        params += noise
    proxy = _Proxy(G, opts.proxy_resolution) if opts.proxy_steps else None
    proxy_goal = _downsample(target.float(), opts.proxy_resolution) if proxy else None
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=opts.lr)
    out = Projection(ws=None, noise=None, image=None, live=live)  # type: ignore[arg-type]

    def assemble(lat: torch.Tensor) -> torch.Tensor:
        if lat.shape[1] == 1:
            return lat.expand(-1, G.num_ws, -1)
        cols, k = [], 0
        for i in range(G.num_ws):
            if k + 1 < len(live) and live[k + 1] <= i:
                k += 1
            cols.append(lat[:, k])
        return torch.stack(cols, 1)  # dead entries: the nearest live entry below (the first live one before it)

    try:
        for step in range(opts.steps):
            # With a warm-up, the proxy steps run the whole schedule and the full steps refine: no perturbation,
            # ``refine_lr`` with a cosine ramp-down, so they can still move what the proxy got wrong.
            if step < opts.proxy_steps or not opts.proxy_steps:
                t = step / (opts.proxy_steps or opts.steps)
                ramp = min(1.0, (1 - t) / opts.lr_rampdown)
                ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / opts.lr_rampup if opts.lr_rampup else 1.0)
                lr = opts.lr * ramp
                scale = w_std * opts.w_noise * max(0.0, 1 - t / opts.w_noise_ramp) ** 2
            else:
                t = (step - opts.proxy_steps) / (opts.steps - opts.proxy_steps)
                lr, scale = opts.refine_lr * (0.5 + 0.5 * math.cos(t * math.pi)), 0.0
            if w_steps and step == w_steps:
                latent = latent.detach().repeat(1, len(live), 1).requires_grad_(True)
                params[0] = latent
                optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ws = assemble(latent + torch.randn(latent.shape, generator=g) * scale)
            if step < opts.proxy_steps:
                phase = "proxy"
                loss = F.mse_loss((proxy(ws, noise) + 1) / 2, (proxy_goal + 1) / 2)
            else:
                phase = "full"
                full = G.synthesis(ws, noise=noise) if noise else G.synthesis(ws, noise_mode="const")
                img01 = (_downsample(full, res) + 1) / 2
                loss = F.mse_loss(img01, goal01)
                if opts.msssim_weight and res >= 176:
                    loss = loss + opts.msssim_weight * (1 - ms_ssim(img01, goal01).mean())
                if perceptual is not None and opts.perceptual_weight:
                    loss = loss + opts.perceptual_weight * perceptual(img01 * 2 - 1, goal).mean()
                if identity is not None and opts.identity_weight:
                    loss = loss + opts.identity_weight * identity(full)
            if noise:
                loss = loss + opts.noise_regularize * noise_regularizer(noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if noise:
                with torch.no_grad():
                    for m in noise:
                        m.sub_(m.mean()).div_(m.square().mean().sqrt())
            out.losses.append(float(loss.detach()))
            out.phases.append(phase)
            out.steps_done = step + 1
            if on_step is not None:
                on_step(step, out.losses[-1], phase)
            if stop is not None and stop():
                out.interrupted = True
                break
    except KeyboardInterrupt:
        out.interrupted = True
    with torch.no_grad():
        out.ws = assemble(latent.detach()).clone()
        out.noise = [m.detach().clone() for m in noise] if noise else None
        out.image = (G.synthesis(out.ws, noise=out.noise, inference=True) if out.noise
                     else G.synthesis(out.ws, noise_mode="const", inference=True))
        low = _downsample(out.image, res)
        out.psnr_db = float(psnr_db(low, goal)[0])
        out.msssim = float(ms_ssim((low + 1) / 2, goal01)[0]) if res >= 176 else float("nan")
    out.seconds = time.perf_counter() - t0
    return out
