"""The metrics behind ``mobilestylegan-eval``: one function per metric, registered with what it needs.

A metric states the features it reads from both sides (``inception``, ``vgg``), whether it needs a reference,
and which side must be a generator; :func:`evaluate` checks those needs, gathers the features once for every
metric asked for (pairing two generators on the same latents and noise when both sides are generators), and
yields each metric's JSON lines in the order of :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.metrics import measures as M
from mobilestylegan.metrics.evaluator import PPL_STREAM, Evaluator, FeatureSet
from mobilestylegan.metrics.sources import Source
from mobilestylegan.nets.resize import compare_at_smaller_resolution
from mobilestylegan.student.sampling import seeded_z

FID_IMPL = (
    "mobilestylegan.metrics.measures: float64, covariance ddof 1, tr sqrt(S1 S2) from the eigendecomposition "
    "of S1^1/2 S2 S1^1/2 (or, with n <= 2048 features on both sides, the exact low-rank SVD route)"
)


@dataclass
class Inputs:
    """What the metrics read: the two sources, their features by kind, per-latent fidelity values."""

    gen: Source
    ref: Source | None
    gen_features: dict[str, FeatureSet] = field(default_factory=dict)
    ref_features: dict[str, FeatureSet] = field(default_factory=dict)
    fidelity: dict[str, list[float]] = field(default_factory=lambda: {"psnr": [], "l1": [], "perceptual": []})


@dataclass(frozen=True)
class Metric:
    """A registered metric. ``compute(ev, inputs)`` yields JSON lines (:meth:`Evaluator.line`)."""

    name: str
    compute: Callable[[Evaluator, Inputs], Iterator[dict]]
    features: tuple[str, ...] = ()
    needs_ref: bool = False
    gen_generator: bool = False
    ref_generator: bool = False


REGISTRY: dict[str, Metric] = {}


def register(name: str, **needs: Any) -> Callable:
    """Decorator: registers the decorated ``compute(ev, inputs)`` as metric ``name`` with ``needs`` (the fields of
    :class:`Metric`)."""

    def add(fn: Callable[[Evaluator, Inputs], Iterator[dict]]) -> Callable:
        REGISTRY[name] = Metric(name, fn, **needs)
        return fn

    return add


def _sizes(n_gen: int | None, n_ref: int | None) -> dict:
    return {"num_samples": n_gen, "num_ref": n_ref}


@register("fid", features=("inception",), needs_ref=True)
def fid(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """FID of the Inception features (or a statistics file's moments)."""
    g, r = x.gen_features["inception"], x.ref_features["inception"]
    both = g.features is not None and r.features is not None
    value = M.fid_from_features(g.features, r.features) if both else M.frechet_distance(*g.moments(), *r.moments())
    yield ev.line(
        "fid",
        value,
        x.gen,
        x.ref,
        implementation=FID_IMPL,
        **_sizes(g.n, r.n),
        resize=ev.a.resize,
        convention=g.convention,
    )


@register("kid", features=("inception",), needs_ref=True)
def kid(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """KID of the Inception features: mean and std over random subsets."""
    a = ev.a
    g, r = x.gen_features["inception"], x.ref_features["inception"]
    mean, std, s = M.kid(g.features, r.features, a.kid_subsets, a.kid_subset_size, seed=a.seed)
    yield ev.line(
        "kid",
        mean,
        x.gen,
        x.ref,
        std=std,
        implementation=f"mobilestylegan.metrics.measures.kid: unbiased "
        f"MMD^2, kernel (x.y/d+1)^3, {a.kid_subsets} subsets of {s}",
        **_sizes(g.n, r.n),
        resize=a.resize,
        convention=g.convention,
    )


@register("pr", features=("vgg",), needs_ref=True)
def precision_recall(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """Precision and recall (two lines) of the VGG16 fc2 features."""
    g, r = x.gen_features["vgg"], x.ref_features["vgg"]
    p, rec = M.precision_recall(g.features, r.features, k=3, device=ev.a.device)
    impl = "mobilestylegan.metrics.measures.precision_recall: k-NN (k=3) manifolds, Kynkaanniemi et al. 2019"
    for name, value in (("precision", p), ("recall", rec)):
        yield ev.line(
            name,
            value,
            x.gen,
            x.ref,
            implementation=impl,
            **_sizes(g.n, r.n),
            resize=ev.a.resize,
            convention=g.convention,
        )


@register("fidelity", needs_ref=True, gen_generator=True, ref_generator=True)
def fidelity(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """PSNR, L1 and perceptual distance between two generators' images of the same latents (three lines)."""
    desc = {
        "psnr": "per-latent PSNR in dB, images clamped to [-1,1] and measured on [0,1] (peak 1, MSE floor 1e-10)",
        "l1": "per-latent mean |a-b| on [0,1]",
        "perceptual": f"per-latent {ev.perceptual().kind} distance at {ev.a.lpips_size}px (area/bilinear resize)",
    }
    for name, vals in x.fidelity.items():
        v = np.asarray(vals, dtype=np.float64)
        yield ev.line(
            name,
            float(v.mean()),
            x.gen,
            x.ref,
            std=float(v.std()),
            implementation=desc[name],
            **_sizes(len(v), len(v)),
            resolution=min(x.gen.G.img_resolution, x.ref.G.img_resolution),
        )


@register("ppl", gen_generator=True)
def ppl_line(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """The perceptual path length line (see :func:`ppl`)."""
    value, info = ppl(ev, x.gen)
    yield ev.line("ppl", value, x.gen, None, **info, **_sizes(ev.a.num, None))


@register("complexity", gen_generator=True)
def complexity(ev: Evaluator, x: Inputs) -> Iterator[dict]:
    """Synthesis parameters and MACs per image (two lines)."""
    from mobilestylegan.student.complexity import count_macs, count_params

    G = x.gen.G
    ws = G.mapping(seeded_z([ev.a.seed], G.z_dim).to(ev.a.device), truncation_psi=ev.a.trunc)
    macs = count_macs(lambda: G.synthesis(ws))
    yield ev.line(
        "params",
        count_params(G.synthesis),
        x.gen,
        None,
        mapping_params=count_params(G.mapping),
        implementation="synthesis parameters (every parameter, auxiliary heads included)",
    )
    yield ev.line(
        "macs",
        macs["macs"],
        x.gen,
        None,
        macs_paper=macs["macs_paper"],
        implementation="synthesis MACs per image (FlopCounterMode / 2, transposed convs on their input grid; "
        "macs_paper counts them on the 2x output grid), batch 1, inference path",
    )


@torch.no_grad()
def _crop(img: torch.Tensor) -> torch.Tensor:
    c = img.shape[-2] // 8
    return img[:, :, 3 * c : 7 * c, 2 * c : 6 * c]


@torch.no_grad()
def ppl(ev: Evaluator, gen: Source) -> tuple[float, dict]:
    """Perceptual path length in W (StyleGAN): distance(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2."""
    a, eps, G = ev.a, ev.a.ppl_eps, gen.G
    dist = ev.perceptual()
    values: list[float] = []
    for seeds in ev.seed_batches(f"{gen.spec}: ppl"):
        z = seeded_z([2 * s for s in seeds] + [2 * s + 1 for s in seeds], G.z_dim).to(a.device)
        w0, w1 = G.mapping(z, truncation_psi=a.trunc).chunk(2)
        if a.ppl_sampling == "full":
            t = torch.stack([torch.rand([], generator=torch.Generator().manual_seed(PPL_STREAM + s)) for s in seeds])
        else:
            t = torch.zeros(len(seeds))
        t = t.to(a.device).view(-1, 1, 1)
        noise = ev.seeded_noise(G, seeds)
        noise2 = None if noise is None else [None if n is None else torch.cat([n, n]) for n in noise]
        img = G.synthesis(torch.cat([w0.lerp(w1, t), w0.lerp(w1, t + eps)]), noise=noise2, inference=True).float()
        if a.ppl_crop:
            img = _crop(img)
        img0, img1 = img.chunk(2)
        values += (dist(img0, img1) / eps**2).double().cpu().tolist()
    crop = "rows 3/8..7/8, cols 2/8..6/8 (StyleGAN's face crop)" if a.ppl_crop else "none"
    return M.ppl_filtered_mean(np.asarray(values)), {
        "implementation": f"W-space PPL, eps={eps:g}, t~{'U(0,1)' if a.ppl_sampling == 'full' else '0 (end)'}, "
        f"distance / eps^2, mean over the 1st..99th percentile",
        "distance": f"{dist.kind} at {a.lpips_size}px (area/bilinear resize)",
        "crop": crop,
    }


def check_needs(metrics: list[str], gen: Source, ref: Source | None) -> None:
    """One clear error for a metric whose inputs are missing or of the wrong kind."""
    chosen = [REGISTRY[m] for m in metrics]
    if ref is None and any(m.needs_ref for m in chosen):
        raise UsageError(f"metrics {', '.join(m.name for m in chosen if m.needs_ref)} need --ref")
    for m in chosen:
        if m.gen_generator and gen.kind != "generator":
            raise UsageError(f"{m.name} needs a generator as --gen, got a {gen.kind} ({gen.spec})")
    for m in chosen:
        if m.ref_generator and ref.kind != "generator":
            raise UsageError(f"{m.name} needs a generator as --ref (the teacher), got a {ref.kind} ({ref.spec})")
    if "kid" in metrics:
        for src in (gen, ref):
            if src.kind == "stats" and src.stats["features"] is None:
                raise UsageError(f"kid needs features, but statistics file {src.spec} holds only mean/covariance")


def _paired(ev: Evaluator, x: Inputs, kinds: tuple[str, ...], with_fidelity: bool) -> None:
    """Two generators on the same latents and noise: features of both sides, and the per-latent fidelity."""
    gen, ref = x.gen, x.ref
    if (gen.G.z_dim, gen.G.w_dim) != (ref.G.z_dim, ref.G.w_dim):
        raise UsageError(
            f"{gen.spec} (z {gen.G.z_dim}, w {gen.G.w_dim}) and {ref.spec} (z {ref.G.z_dim}, "
            f"w {ref.G.w_dim}) do not share a latent space"
        )
    chunks: dict[str, dict[str, list]] = {"gen": {k: [] for k in kinds}, "ref": {k: [] for k in kinds}}
    for seeds in ev.seed_batches(f"{gen.spec} vs {ref.spec}"):
        img_g, img_r = ev.render_pair(gen.G, ref.G, seeds)
        for side, imgs in (("gen", img_g), ("ref", img_r)):
            for k, v in ev.extract(imgs, kinds).items():
                chunks[side][k].append(v)
        if with_fidelity:
            _add_fidelity(ev, x, img_g, img_r)
    x.gen_features = {k: FeatureSet(ev.convention(k), np.concatenate(chunks["gen"][k])) for k in kinds}
    x.ref_features = {k: FeatureSet(ev.convention(k), np.concatenate(chunks["ref"][k])) for k in kinds}


def _add_fidelity(ev: Evaluator, x: Inputs, img_g: torch.Tensor, img_r: torch.Tensor) -> None:
    """Append each pair's PSNR, L1 and perceptual distance, compared at the smaller resolution, to ``x.fidelity``."""
    g, r, psnr = compare_at_smaller_resolution(img_g, img_r)
    x.fidelity["psnr"] += psnr.tolist()
    x.fidelity["l1"] += ((g.clamp(-1, 1) - r.clamp(-1, 1)).abs() / 2).flatten(1).mean(1).tolist()
    with torch.no_grad():
        x.fidelity["perceptual"] += ev.perceptual()(g, r).tolist()


def evaluate(ev: Evaluator, gen: Source, ref: Source | None, metrics: list[str]) -> Iterator[dict]:
    """The JSON lines of ``metrics`` (names in :data:`REGISTRY`) for ``gen`` against ``ref``."""
    check_needs(metrics, gen, ref)
    chosen = [m for name, m in REGISTRY.items() if name in metrics]
    kinds = tuple(k for k in ("inception", "vgg") if any(k in m.features for m in chosen))
    x = Inputs(gen, ref)
    with_fidelity = "fidelity" in metrics
    both_generators = gen.kind == "generator" and ref is not None and ref.kind == "generator"
    if both_generators and (kinds or with_fidelity):
        _paired(ev, x, kinds, with_fidelity)
    elif kinds:
        x.gen_features, x.ref_features = ev.features(gen, kinds), ev.features(ref, kinds)
    for m in chosen:
        yield from m.compute(ev, x)
