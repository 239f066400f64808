"""Projection: the latent (and optionally the noise) under which a generator renders a given image.

The StyleGAN2 projector's schedule: start at the mean w (of ``w_avg_samples`` mapped latents), Adam with a learning
rate ramped up over the first 5% and down (cosine) over the last 25% of the steps, optionally a random perturbation
of the latent (``w_noise * w_std``, decaying to zero at 75% of the steps), and, when the noise maps are optimised,
their lag-1 autocorrelation as a regulariser (weight 1e5) with the maps renormalised after every step. The loss
compares render and target at ``loss_resolution`` (box-downsampled): MSE on [0, 1] plus
``msssim_weight * (1 - MS-SSIM)``, plus ``perceptual_weight`` times LPIPS-VGG when ``lpips`` asks for it (``auto``:
when its weights are found), plus ``identity_weight`` times FaceNet's ``1 - cos`` to the target when that weight is
set.

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
cosine). The proxy's image is anchored to the full render: every ``proxy_refresh`` proxy steps one full render
(no gradient) at the current latent gives the proxy's error there, which is added to the proxy's image until the
next refresh, so the warm-up descends on the full render's error to first order instead of on the head's (without
the anchor the optimiser exploits the head's error).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mobilestylegan.edit.losses import ms_ssim, noise_regularizer
from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import to_uint8
from mobilestylegan.io.latent_space import live_ws, mapped_w
from mobilestylegan.nets.lpips import PerceptualDistance, load_lpips
from mobilestylegan.nets.resize import area_downsample
from mobilestylegan.student.sampling import seeded_z
from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from teacher.numerics import psnr_db

SPACES = ("w", "wplus")
LPIPS_MODES = ("auto", "on", "off")

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Identity = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ProjectOptions:
    """How to project (``mobilestylegan-project``'s options of the same names; see the module docstring).

    Args:
        space: ``w`` (one w for every entry) or ``wplus`` (each live W+ entry on its own).
        steps: Optimisation steps, the warm-up's included.
        loss_resolution: Side the loss compares render and target at (at most the generator's resolution).
        lr / lr_rampup / lr_rampdown: Adam's peak learning rate and the shares of the steps it ramps up and down.
        w_noise / w_noise_ramp: The latent perturbation (in w's spread) and the share of the steps it lasts.
        optimize_noise / noise_regularize: Also optimise the noise maps, with this regulariser weight.
        msssim_weight: Weight of ``1 - MS-SSIM`` (only at loss resolutions of 176 px and more).
        w_steps: ``wplus``: the first steps optimise one shared w; None: a third of the steps.
        lpips / perceptual_weight: LPIPS-VGG in the loss, one of :data:`LPIPS_MODES` (``auto``: when its weights
            are found; ``off`` by default here, ``auto`` in the command), and its weight.
        identity_weight: Weight of FaceNet's ``1 - cos`` to the target (0: off; needs FaceNet and the face models).
        proxy_steps / proxy_resolution / refine_lr: The students' warm-up on a truncated student, and the learning
            rate of the full steps after it.
        proxy_refresh: Proxy steps between two full renders that anchor the proxy's image (0: never anchored).
        w_avg_samples / seed: Mapped latents behind the mean w, and the seed of every random draw.
    """

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
    lpips: str = "off"
    perceptual_weight: float = 1.0
    identity_weight: float = 0.0
    proxy_steps: int = 0
    proxy_resolution: int = 128
    proxy_refresh: int = 10
    refine_lr: float = 0.02
    w_avg_samples: int = 10_000
    seed: int = 0

    @property
    def shared_w_steps(self) -> int:
        """The steps that optimise one shared w before each live entry moves on its own (0 in ``w``)."""
        if self.space != "wplus":
            return 0
        return self.steps // 3 if self.w_steps is None else self.w_steps

    def check(self, G: torch.nn.Module) -> None:
        """A :class:`UsageError` naming the first option that does not fit these ranges or generator ``G``."""
        if self.space not in SPACES:
            raise UsageError(f"space must be one of {', '.join(SPACES)}; got {self.space!r}")
        if self.lpips not in LPIPS_MODES:
            raise UsageError(f"lpips must be one of {', '.join(LPIPS_MODES)}; got {self.lpips!r}")
        if self.steps < 0 or not 0 <= self.proxy_steps <= self.steps or self.proxy_refresh < 0:
            raise UsageError(
                f"steps must be >= 0, proxy steps within 0..steps and the proxy refresh >= 0; got {self.steps}, "
                f"{self.proxy_steps}, {self.proxy_refresh}"
            )
        if not 0 <= self.shared_w_steps <= self.steps or self.lr <= 0 or self.w_noise < 0:
            raise UsageError(
                f"w steps must be within 0..steps, the learning rate > 0 and the latent perturbation "
                f">= 0; got {self.w_steps}, {self.lr}, {self.w_noise}"
            )
        if self.proxy_steps and not isinstance(G.synthesis, MobileSynthesisNetwork):
            raise UsageError("the proxy warm-up is defined for students (MobileStyleGAN); use --proxy-steps 0")


@dataclass
class Projection:
    """The result of one projection."""

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
    identity_box: np.ndarray | None = None  # the box of the target's face the identity term compared, if any
    init: str = "mean"  # where the optimisation started (mean, or what the caller says its start latent was)
    # W+ after the steps ``keep`` asked for (0: the start), and the seconds since the projection began at each
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    snapshot_seconds: dict[int, float] = field(default_factory=dict)


def w_statistics(G: torch.nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean w ``[1, w_dim]`` and the RMS distance to it of ``n`` mapped seeded latents."""
    w = mapped_w(G, n, seed)
    avg = w.mean(0, keepdim=True)
    return avg.float(), float(((w - avg) ** 2).sum(1).mean().sqrt())


def perceptual_term(mode: str, size: int) -> tuple[PerceptualDistance | None, str | None]:
    """LPIPS-VGG at ``size`` pixels for the loss as ``mode`` asks (one of :data:`LPIPS_MODES`), and a note for the
    user when ``auto`` leaves it out: ``off`` none; ``on`` LPIPS, a :class:`UsageError` when its weights are
    missing; ``auto`` LPIPS when its weights are found, else None and why."""
    if mode == "off":
        return None, None
    try:
        return load_lpips(size), None
    except FileNotFoundError as err:
        if mode == "on":
            raise UsageError(f"--lpips on: {err}") from None
        return None, f"LPIPS left out of the loss: {err}"


class _Proxy:
    """Blocks up to the ``resolution`` features + a least-squares 1x1 head: an image at that resolution."""

    def __init__(self, G: torch.nn.Module, resolution: int, fit_samples: int = 4, seed: int = 12345) -> None:
        syn = G.synthesis
        res = [8 * 2**i for i in range(len(syn.layers))]
        if resolution not in res[:-1]:
            raise UsageError(
                f"proxy resolution must be one of {res[:-1]} for this {G.img_resolution}px student; got {resolution}"
            )
        self.syn, self.blocks, self.resolution = syn, res.index(resolution) + 1, resolution
        with torch.no_grad():
            w = G.mapping.embed(seeded_z(list(range(seed, seed + fit_samples)), G.z_dim))
            feats, targets = [], []
            for i in range(fit_samples):
                ws = w[i : i + 1, None].expand(-1, syn.num_ws, -1)
                feats.append(self.features(ws, None))
                targets.append(area_downsample(syn(ws, noise_mode="const", inference=True), resolution))
            self.weight, self.bias = _least_squares_head(feats, targets)

    def features(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """The features at the proxy's resolution, ``[N, C, r, r]``."""
        syn = self.syn
        maps = noise if noise is not None else syn.make_noise(ws.shape[0], "const")
        x = syn.input.input.expand(ws.shape[0], -1, -1, -1)
        x = syn.conv1(x, ws[:, 0], maps[0])
        for i, block in enumerate(syn.layers[: self.blocks]):
            x, _ = block(x, ws[:, 3 * i + 1 : 3 * i + 4], maps[1 + 2 * i : 3 + 2 * i], head=False)
        return x

    def __call__(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        return F.conv2d(self.features(ws, noise), self.weight, self.bias)


def _least_squares_head(feats: list[torch.Tensor], targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1x1 convolution (weight ``[3, C, 1, 1]``, bias ``[3]``) that maps the features closest to the images."""
    x = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in feats]).double()
    y = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, 3) for t in targets]).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    # Normal equations in float64 (C + 1 unknowns per colour; a tiny ridge keeps dead channels harmless).
    gram = x.T @ x
    gram += 1e-8 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    sol = torch.linalg.solve(gram, x.T @ y).float()  # [C + 1, 3]
    return sol[:-1].t().contiguous()[:, :, None, None], sol[-1]


def _render(
    G: torch.nn.Module, ws: torch.Tensor, noise: list[torch.Tensor] | None, inference: bool = False
) -> torch.Tensor:
    """``G``'s render of the W+ ``ws`` with the optimised noise maps, or its constant maps when there are none."""
    if noise:
        return G.synthesis(ws, noise=noise, inference=inference)
    return G.synthesis(ws, noise_mode="const", inference=inference)


def _assemble(latent: torch.Tensor, num_ws: int, live: list[int]) -> torch.Tensor:
    """The full W+ ``[1, num_ws, w_dim]`` of an optimised latent: one shared w everywhere, or one per live entry with
    each dead entry taking the nearest live entry below (the first live one before it)."""
    if latent.shape[1] == 1:
        return latent.expand(-1, num_ws, -1)
    cols, k = [], 0
    for i in range(num_ws):
        if k + 1 < len(live) and live[k + 1] <= i:
            k += 1
        cols.append(latent[:, k])
    return torch.stack(cols, 1)


def _schedule(opts: ProjectOptions, step: int, w_std: float) -> tuple[float, float]:
    """The learning rate and the scale of the latent perturbation at ``step``.

    Without a warm-up the steps run the projector's schedule; with one the proxy steps run it and the full steps
    refine: no perturbation, ``refine_lr`` with a cosine ramp-down, so they can still move what the proxy got wrong.
    """
    if step < opts.proxy_steps or not opts.proxy_steps:
        t = step / (opts.proxy_steps or opts.steps)
        ramp = min(1.0, (1 - t) / opts.lr_rampdown)
        ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / opts.lr_rampup if opts.lr_rampup else 1.0)
        return opts.lr * ramp, w_std * opts.w_noise * max(0.0, 1 - t / opts.w_noise_ramp) ** 2
    t = (step - opts.proxy_steps) / (opts.steps - opts.proxy_steps)
    return opts.refine_lr * (0.5 + 0.5 * math.cos(t * math.pi)), 0.0


class _Loss:
    """The loss of a step against the target: the proxy's MSE during the warm-up, then MSE, MS-SSIM and the optional
    perceptual and identity terms at the loss resolution."""

    def __init__(
        self,
        G: torch.nn.Module,
        target: torch.Tensor,
        opts: ProjectOptions,
        perceptual: Perceptual | None,
        identity: Identity | None,
    ) -> None:
        self.G, self.opts, self.perceptual, self.identity = G, opts, perceptual, identity
        self.resolution = min(opts.loss_resolution, G.img_resolution)
        self.goal = area_downsample(target.float(), self.resolution)
        self.goal01 = (self.goal + 1) / 2
        self.proxy = _Proxy(G, opts.proxy_resolution) if opts.proxy_steps else None
        self.proxy_goal01 = (area_downsample(target.float(), opts.proxy_resolution) + 1) / 2 if self.proxy else None
        self.anchor: torch.Tensor | float = 0.0  # the full render minus the proxy's image at the last refresh

    def __call__(self, step: int, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> tuple[torch.Tensor, str]:
        """The loss of ``step`` for the W+ ``ws`` and the noise maps, and the phase (``proxy`` or ``full``)."""
        if step < self.opts.proxy_steps:
            image = self.proxy(ws, noise)
            if self.opts.proxy_refresh and step % self.opts.proxy_refresh == 0:
                with torch.no_grad():
                    full = _render(self.G, ws, noise, inference=True)
                    self.anchor = area_downsample(full, self.opts.proxy_resolution) - image
            return F.mse_loss((image + self.anchor + 1) / 2, self.proxy_goal01), "proxy"
        return self.full(ws, noise), "full"

    def full(self, ws: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        """The full generator's render against the target."""
        G, opts = self.G, self.opts
        full = _render(G, ws, noise)
        img01 = (area_downsample(full, self.resolution) + 1) / 2
        loss = F.mse_loss(img01, self.goal01)
        if opts.msssim_weight and self.resolution >= 176:
            loss = loss + opts.msssim_weight * (1 - ms_ssim(img01, self.goal01).mean())
        if self.perceptual is not None and opts.perceptual_weight:
            loss = loss + opts.perceptual_weight * self.perceptual(img01 * 2 - 1, self.goal).mean()
        if self.identity is not None and opts.identity_weight:
            loss = loss + opts.identity_weight * self.identity(full)
        return loss

    def measure(self, image: torch.Tensor) -> tuple[float, float]:
        """PSNR and MS-SSIM (NaN below 176 px) of a final render against the target, at the loss resolution."""
        low = area_downsample(image, self.resolution)
        msssim = float(ms_ssim((low + 1) / 2, self.goal01)[0]) if self.resolution >= 176 else float("nan")
        return float(psnr_db(low, self.goal)[0]), msssim


class _Latent:
    """What the optimisation moves: the latent (one shared w, or one per live entry), the optional noise maps, and
    Adam over them; with the random stream of the perturbation (which draws the initial noise maps first)."""

    def __init__(
        self,
        G: torch.nn.Module,
        opts: ProjectOptions,
        live: list[int],
        w_avg: torch.Tensor | None,
        init: torch.Tensor | None,
    ) -> None:
        self.num_ws, self.live, self.opts = G.num_ws, live, opts
        n = 1 if opts.space == "w" or opts.shared_w_steps else len(live)
        if init is None:
            start = w_avg[:, None].repeat(1, n, 1)
        else:  # the live entries of a W+ start (their mean when one w is optimised)
            start = init[:, live].float()
            start = start.mean(1, keepdim=True) if n == 1 else start
        self.latent = start.detach().clone().requires_grad_(True)
        self.generator = torch.Generator().manual_seed(opts.seed)
        self.noise = None
        if opts.optimize_noise:
            self.noise = [
                torch.randn(s, generator=self.generator)[None].requires_grad_(True) for s in G.synthesis.noise_shapes
            ]
        self.optimizer = self._adam(opts.lr)

    def _adam(self, lr: float) -> torch.optim.Adam:
        """A fresh Adam over the latent and the noise maps."""
        return torch.optim.Adam([self.latent, *(self.noise or [])], betas=(0.9, 0.999), lr=lr)

    def untie(self, lr: float) -> None:
        """From one shared w to each live entry on its own (starting where the shared w is), with a fresh Adam."""
        self.latent = self.latent.detach().repeat(1, len(self.live), 1).requires_grad_(True)
        self.optimizer = self._adam(lr)

    def perturbed_ws(self, lr: float, scale: float) -> torch.Tensor:
        """Set the learning rate; the full W+ of the latent plus random noise of ``scale``."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return _assemble(
            self.latent + torch.randn(self.latent.shape, generator=self.generator) * scale, self.num_ws, self.live
        )

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """One Adam step on ``loss`` plus the noise regulariser, then the noise maps renormalised; returns that sum."""
        if self.noise:
            loss = loss + self.opts.noise_regularize * noise_regularizer(self.noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.noise:
            with torch.no_grad():
                for m in self.noise:
                    m.sub_(m.mean()).div_(m.square().mean().sqrt())
        return loss

    @torch.no_grad()
    def result(self) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The full W+ (dead entries filled) and the noise maps, detached copies."""
        return (
            _assemble(self.latent.detach(), self.num_ws, self.live).clone(),
            [m.detach().clone() for m in self.noise] if self.noise else None,
        )


class Projector:
    """Projects images into one generator's latent space with one set of options.

    The loss terms the options ask for are built here: LPIPS-VGG once (``opts.lpips``; :attr:`note` says why
    ``auto`` left it out), FaceNet's identity term for each target (``opts.identity_weight``). A ``perceptual``
    distance given here replaces LPIPS (e.g. the unit-normalised VGG16 distance).
    """

    def __init__(self, G: torch.nn.Module, opts: ProjectOptions, perceptual: Perceptual | None = None) -> None:
        opts.check(G)
        self.G, self.opts = G, opts
        self.loss_resolution = min(opts.loss_resolution, G.img_resolution)
        self.note: str | None = None
        if perceptual is None:
            perceptual, self.note = perceptual_term(opts.lpips, self.loss_resolution)
        self.perceptual = perceptual

    def identity_term(self, target: torch.Tensor) -> Identity | None:
        """FaceNet's ``1 - cos`` to ``target``'s face (:class:`~mobilestylegan.edit.faces.IdentityLoss`), or None
        when ``opts.identity_weight`` is 0."""
        if not self.opts.identity_weight:
            return None
        from mobilestylegan.edit.faces import IdentityLoss

        return IdentityLoss(to_uint8(target)[0])

    def project(
        self,
        target: torch.Tensor,
        on_step: Callable[[int, float, str], None] | None = None,
        stop: Callable[[], bool] | None = None,
        identity: Identity | None = None,
        init: torch.Tensor | None = None,
        keep: Sequence[int] = (),
    ) -> Projection:
        """Project ``target`` (``[1, 3, R, R]`` in [-1, 1], R the generator's resolution).

        ``keep``: step counts after which the W+ is kept in ``snapshots`` (with the time in ``snapshot_seconds``; 0 is
        the start), e.g. to measure quality against time.

        ``init`` (``[1, num_ws, w_dim]``, e.g. an encoder's latent) is where the optimisation starts instead of the
        mean w; its live entries are optimised each on its own from the first step unless ``w_steps`` says otherwise.
        ``identity(render) -> scalar`` (the full render in [-1, 1]) replaces the identity term the options ask for.
        ``on_step(step, loss, phase)`` is called after each step; ``stop()`` returning True (or Ctrl-C) ends the
        optimisation early, and the result so far is returned with ``interrupted`` set.
        """
        R = self.G.img_resolution
        if identity is None:
            identity = self.identity_term(target)
        if tuple(target.shape) != (1, 3, R, R):
            raise UsageError(
                f"the target must be [1, 3, {R}, {R}] (the generator's resolution); got {list(target.shape)}"
            )
        if init is not None and tuple(init.shape) != (1, self.G.num_ws, self.G.w_dim):
            raise UsageError(f"the start latent must be [1, {self.G.num_ws}, {self.G.w_dim}]; got {list(init.shape)}")
        t0 = time.perf_counter()
        opts = self.opts
        if init is not None and opts.w_steps is None:
            opts = dataclasses.replace(opts, w_steps=0)
        self.G.requires_grad_(False)
        live = live_ws(self.G)
        if init is None or opts.w_noise:
            w_avg, w_std = w_statistics(self.G, opts.w_avg_samples, opts.seed)
        else:  # a given start and no perturbation: neither statistic is used
            w_avg, w_std = None, 0.0
        loss = _Loss(self.G, target, opts, self.perceptual, identity)
        latent = _Latent(self.G, opts, live, w_avg, init)
        out = Projection(
            ws=None,
            noise=None,
            image=None,
            live=live,  # type: ignore[arg-type]
            identity_box=getattr(identity, "box", None),
            init="mean" if init is None else "latent",
        )
        if 0 in keep:
            out.snapshots[0], out.snapshot_seconds[0] = latent.result()[0], time.perf_counter() - t0
        try:
            self._optimise(opts, latent, loss, w_std, out, on_step, stop, (set(keep), t0))
        except KeyboardInterrupt:
            out.interrupted = True
        self._finish(latent, loss, out)
        out.seconds = time.perf_counter() - t0
        return out

    def _optimise(
        self,
        opts: ProjectOptions,
        latent: _Latent,
        loss: _Loss,
        w_std: float,
        out: Projection,
        on_step: Callable[[int, float, str], None] | None,
        stop: Callable[[], bool] | None,
        keep: tuple[set[int], float] = (set(), 0.0),
    ) -> None:
        """Run the steps, recording each step's loss and phase in ``out`` (and the W+ after the steps ``keep[0]``
        names, with the seconds since ``keep[1]``)."""
        for step in range(opts.steps):
            lr, scale = _schedule(opts, step, w_std)
            if opts.shared_w_steps and step == opts.shared_w_steps:
                latent.untie(lr)
            ws = latent.perturbed_ws(lr, scale)
            value, phase = loss(step, ws, latent.noise)
            out.losses.append(float(latent.update(value).detach()))
            out.phases.append(phase)
            out.steps_done = step + 1
            if out.steps_done in keep[0]:
                out.snapshots[step + 1] = latent.result()[0]
                out.snapshot_seconds[step + 1] = time.perf_counter() - keep[1]
            if on_step is not None:
                on_step(step, out.losses[-1], phase)
            if stop is not None and stop():
                out.interrupted = True
                break

    @torch.no_grad()
    def _finish(self, latent: _Latent, loss: _Loss, out: Projection) -> None:
        """The final latent, noise maps and render in ``out``, and the render's PSNR and MS-SSIM."""
        out.ws, out.noise = latent.result()
        out.image = _render(self.G, out.ws, out.noise, inference=True)
        out.psnr_db, out.msssim = loss.measure(out.image)


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    opts: ProjectOptions,
    on_step: Callable[[int, float, str], None] | None = None,
    stop: Callable[[], bool] | None = None,
    perceptual: Perceptual | None = None,
    identity: Identity | None = None,
    init: torch.Tensor | None = None,
    keep: Sequence[int] = (),
) -> Projection:
    """Project ``target`` (``[1, 3, R, R]`` in [-1, 1], R the generator's resolution) into ``G``'s latent space: one
    :meth:`Projector.project`.

    ``perceptual(a, b) -> [N]`` (images in [-1, 1] at the loss resolution), when given, is the perceptual term in
    place of the LPIPS ``opts.lpips`` asks for, weighted by ``opts.perceptual_weight``; ``identity(render) ->
    scalar`` (the full render in [-1, 1]) likewise replaces FaceNet's term, weighted by ``opts.identity_weight``.

    ``init`` and ``keep`` as in :meth:`Projector.project`. ``on_step(step, loss, phase)`` is called after each step;
    ``stop()`` returning True (or Ctrl-C) ends the optimisation early, and the result so far is returned with
    ``interrupted`` set.
    """
    return Projector(G, opts, perceptual).project(target, on_step, stop, identity, init, keep)
