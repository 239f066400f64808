"""``mobilestylegan-eval``: FID, KID, precision/recall, PPL, student-vs-teacher fidelity and size, with every
convention written next to every number (one JSON line per metric, plus a table).

A SOURCE, on either side, is a generator (checkpoint path or pretrained name), a folder of images
(png/jpg, searched recursively, all of them used) or a statistics file (``.npz`` written by
``--save-ref-stats``). Conventions (see README "Evaluation"):

- Generators: sample i uses ``z = seeded_z(seed + i)``, truncation ``--trunc`` and random noise drawn per
  sample from its own seeded stream, so results do not depend on the batch size. Two generators on the
  two sides render the same z, the same w (the reference's mapping, broadcast) and the same noise maps.
- FID/KID: pytorch-fid's Inception-v3 port (``pt_inception-2015-12-05``), pool3 2048-d, 299 px,
  ``--resize clean`` (uint8 + PIL bicubic, clean-fid) or ``legacy`` (float + bilinear, pytorch-fid).
- Precision/recall: VGG16 fc2 (4096-d, after ReLU) of the same preprocessing at 224 px, k = 3.
- PPL (W space) and the fidelity perceptual distance: LPIPS-VGG (if LPIPS's heads are found) or the
  unit-normalised VGG16 feature distance, at 256 px.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mobilestylegan.metrics import measures as M
from mobilestylegan.errors import UsageError
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.nets.inception import InceptionWeightsNotFoundError, load_inception, preprocess
from mobilestylegan.student.sampling import seeded_z
from mobilestylegan.nets.vgg import VGGWeightsNotFoundError, load_vgg16_full
from teacher.formats.common import CheckpointError
from teacher.numerics import psnr_db
from teacher.fs import OutputPathError, atomic_write, cache_root, sha256_file

EXAMPLES = """examples:
  mobilestylegan-eval --gen student.pt --ref ffhq1024/ --metrics fid,kid,pr --num 50000
  mobilestylegan-eval --gen student.pt --gen teacher.pkl --ref ffhq_stats.npz --metrics fid,kid
  mobilestylegan-eval --gen student.pt --ref teacher.pkl --metrics fidelity,fid,complexity --num 1000
  mobilestylegan-eval --gen ffhq-1024 --metrics ppl,complexity --num 10000 --device cuda --out results.jsonl
  mobilestylegan-eval --gen images/ --ref ffhq1024/ --save-ref-stats ffhq_stats.npz --metrics fid
metrics: fid, kid, pr (precision + recall), ppl, fidelity (psnr, l1, perceptual; --ref a generator),
complexity (params, macs). Weights (never downloaded): --inception / $MOBILESTYLEGAN_INCEPTION,
--vgg / $MOBILESTYLEGAN_VGG16, --lpips / $MOBILESTYLEGAN_LPIPS (optional).
"""

METRICS = ("fid", "kid", "pr", "ppl", "fidelity", "complexity")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STATS_FORMAT, STATS_VERSION = "mobilestylegan-stats", 1
STANDARD_SIZES = {"inception_size": 299, "pr_size": 224, "lpips_size": 256}
# Independent random streams per sample: z uses seed + i itself (seeded_z).
_NOISE_STREAM, _PPL_STREAM = 1 << 32, 2 << 32
FID_IMPL = ("mobilestylegan.metrics.measures: float64, covariance ddof 1, tr sqrt(S1 S2) from the eigendecomposition of "
            "S1^1/2 S2 S1^1/2 (or, with n <= 2048 features on both sides, the exact low-rank SVD route)")


# ---------------------------------------------------------------------------------------------- sources

@dataclass
class Source:
    """One side of the comparison. ``kind`` is ``generator``, ``folder`` or ``stats``."""

    spec: str
    kind: str
    ident: str  # content hash (folder), file sha256 (stats, checkpoint) or the pretrained name
    G: Any = None
    files: list[Path] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def _folder_hash(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\0{sha256_file(f)}\n".encode())
    return "sha256:" + h.hexdigest()


def open_source(spec: str, device: str) -> Source:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(files) < 2:
            raise UsageError(f"folder {path} holds {len(files)} png/jpg image(s); at least 2 are needed")
        return Source(spec, "folder", _folder_hash(files, path), files=files)
    if path.is_file() and path.suffix == ".npz":
        return Source(spec, "stats", "sha256:" + sha256_file(path), stats=load_stats(path))
    G = load_generator_any(spec, device).eval().requires_grad_(False)
    return Source(spec, "generator", "sha256:" + sha256_file(path) if path.is_file() else f"pretrained:{spec}", G=G)


# ------------------------------------------------------------------------------------- statistics files

def save_stats(path: Path, header: dict, mu: np.ndarray, sigma: np.ndarray, features: np.ndarray | None,
               vgg_features: np.ndarray | None) -> Path:
    """Write a statistics file atomically (npz: ``header`` JSON, ``mu``, ``sigma``, optional features)."""
    arrays = {"header": np.array(json.dumps(header | {"format": STATS_FORMAT, "version": STATS_VERSION})),
              "mu": mu, "sigma": sigma}
    if features is not None:
        arrays["features"] = features
    if vgg_features is not None:
        arrays["vgg_features"] = vgg_features

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(Path(path), write)


def load_stats(path: Path) -> dict[str, Any]:
    """Read a statistics file: ``header`` (dict), ``mu``, ``sigma``, ``features`` / ``vgg_features`` or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        header = json.loads(str(data["header"]))
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"{path} is not a mobilestylegan statistics file ({err})") from None
    if header.get("format") != STATS_FORMAT or header.get("version") != STATS_VERSION:
        raise UsageError(f"{path} is not a {STATS_FORMAT} v{STATS_VERSION} file (header {header.get('format')!r} "
                         f"v{header.get('version')})")
    return {"header": header, "mu": data["mu"], "sigma": data["sigma"], "features": data.get("features"),
            "vgg_features": data.get("vgg_features")}


def cache_dir() -> Path:
    """Where feature statistics of generators and folders are cached."""
    return cache_root() / "stats"


# ------------------------------------------------------------------------------------------- evaluator

@dataclass
class FeatureSet:
    """Features of one source under one convention (``features`` None for mean/covariance-only stats)."""

    convention: dict
    features: np.ndarray | None
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    count: int | None = None  # sample count of a moments-only statistics file

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mu is None:
            self.mu, self.sigma = M.feature_stats(self.features)
        return self.mu, self.sigma

    @property
    def n(self) -> int | None:
        return self.count if self.features is None else len(self.features)


class Evaluator:
    """Holds the options and the lazily loaded networks; computes features and metric lines."""

    def __init__(self, args: argparse.Namespace, metrics: list[str]) -> None:
        self.a = args
        self.need_classifier = "pr" in metrics  # fc1/fc2 are 120M parameters: only for precision/recall
        self._inception = self._vgg = self._perceptual = None
        self.weights: dict[str, str] = {}

    # ------------------------------------------------------------------------------ networks
    def inception(self):
        if self._inception is None:
            net, self.weights["inception"] = load_inception(self.a.inception, self.a.allow_random_weights)
            self._inception = net.to(self.a.device)
        return self._inception

    def vgg(self):
        if self._vgg is None:
            net, self.weights["vgg16"] = load_vgg16_full(self.a.vgg, self.a.allow_random_weights,
                                                         classifier=self.need_classifier)
            self._vgg = net.to(self.a.device)
        return self._vgg

    def perceptual(self) -> M.PerceptualDistance:
        if self._perceptual is None:
            lpips_path = M.find_lpips_weights(self.a.lpips)
            heads = M.load_lpips_heads(lpips_path) if lpips_path else None
            if lpips_path:
                self.weights["lpips"] = sha256_file(lpips_path)
            self._perceptual = M.PerceptualDistance(self.vgg(), heads, self.a.lpips_size).to(self.a.device)
        return self._perceptual

    def convention(self, kind: str) -> dict:
        a = self.a
        if kind == "inception":
            self.inception()
            return {"network": "pt_inception-2015-12-05 (pytorch-fid port), pool3 2048-d",
                    "weights": self.weights["inception"], "resize": a.resize, "size": a.inception_size}
        self.vgg()
        return {"network": "vgg16 fc2 4096-d after ReLU (torchvision vgg16-397923af)",
                "weights": self.weights["vgg16"], "resize": a.resize, "size": a.pr_size}

    # ------------------------------------------------------------------------------ rendering
    def _noise(self, G, seeds: list[int]) -> list[torch.Tensor | None] | None:
        """Per-sample seeded random noise maps (drawn on the CPU: identical on every device)."""
        if not hasattr(G.synthesis, "make_noise"):
            return None
        per = [G.synthesis.make_noise(1, "random", device="cpu",
                                      generator=torch.Generator().manual_seed(_NOISE_STREAM + s)) for s in seeds]
        return [None if maps[0] is None else torch.cat(maps).to(self.a.device) for maps in zip(*per)]

    @torch.no_grad()
    def render(self, G, seeds: list[int]) -> torch.Tensor:
        ws = G.mapping(seeded_z(seeds, G.z_dim).to(self.a.device), truncation_psi=self.a.trunc)
        return G.synthesis(ws, noise=self._noise(G, seeds)).float()

    @torch.no_grad()
    def render_pair(self, A, B, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Same z, same w (B's mapping, one w broadcast to each network's num_ws), same noise maps."""
        from mobilestylegan.student.generator import StudentGenerator, teacher_noise_for_student

        w = B.mapping(seeded_z(seeds, B.z_dim).to(self.a.device), truncation_psi=self.a.trunc)[:, 0]
        shapes_a, shapes_b = A.synthesis.noise_shapes, B.synthesis.noise_shapes
        try:
            if list(shapes_a) == list(shapes_b):
                noise_b = noise_a = self._noise(B, seeds)
            elif isinstance(A, StudentGenerator) and not isinstance(B, StudentGenerator):
                noise_b = self._noise(B, seeds)
                noise_a = teacher_noise_for_student(noise_b, A.synthesis)
            elif isinstance(B, StudentGenerator) and not isinstance(A, StudentGenerator):
                noise_a = self._noise(A, seeds)
                noise_b = teacher_noise_for_student(noise_a, B.synthesis)
            else:
                raise ValueError(f"noise layers {len(shapes_a)} vs {len(shapes_b)} do not correspond")
        except ValueError as err:
            raise UsageError(f"cannot give both generators the same noise: {err}") from None
        img_a = A.synthesis(w[:, None].expand(-1, A.num_ws, -1), noise=noise_a).float()
        img_b = B.synthesis(w[:, None].expand(-1, B.num_ws, -1), noise=noise_b).float()
        return img_a, img_b

    def _seed_batches(self, desc: str) -> Iterator[list[int]]:
        n, b, s = self.a.num, self.a.batch_size, self.a.seed
        with tqdm(total=n, desc=desc, unit="img", leave=False, disable=self.a.quiet) as bar:
            for i in range(0, n, b):
                seeds = list(range(s + i, s + min(i + b, n)))
                yield seeds
                bar.update(len(seeds))

    def _folder_batches(self, src: Source) -> Iterator[list[torch.Tensor]]:
        """Lists of ``[3, H, W]`` images in [-1, 1] (sizes may differ: each is resized on its own)."""
        from PIL import Image

        b = self.a.batch_size
        for i in tqdm(range(0, len(src.files), b), desc=f"{src.spec}: reading", unit="batch", leave=False,
                      disable=self.a.quiet):
            batch = []
            for f in src.files[i:i + b]:
                with Image.open(f) as im:
                    arr = np.array(im.convert("RGB"))  # [H, W, 3] uint8
                batch.append(torch.from_numpy(arr).permute(2, 0, 1).float().div(127.5).sub(1))
            yield batch

    # ------------------------------------------------------------------------------ features
    @torch.no_grad()
    def _extract(self, imgs: torch.Tensor | list[torch.Tensor], kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Images ``[N, 3, H, W]`` (or a list of ``[3, H, W]``) in [-1, 1] -> {kind: features [N, d]} (float64)."""
        out = {}
        if "inception" in kinds:
            x = torch.cat([preprocess(im[None], self.a.resize, self.a.inception_size) for im in imgs])
            out["inception"] = self.inception()(x.to(self.a.device)).double().cpu().numpy()
        if "vgg" in kinds:
            x = torch.cat([preprocess(im[None], self.a.resize, self.a.pr_size) for im in imgs])
            out["vgg"] = self.vgg().fc2(x.to(self.a.device) * 2 - 1).double().cpu().numpy()
        return out

    def features(self, src: Source, kinds: tuple[str, ...]) -> dict[str, FeatureSet]:
        """Features of a folder (cached by content hash), a generator (``--num`` seeds) or a stats file."""
        if src.kind == "stats":
            return {k: self._from_stats(src, k) for k in kinds}
        result: dict[str, FeatureSet] = {}
        todo = list(kinds)
        if src.kind == "folder":
            for k in kinds:
                cached = self._cache_path(src, k)
                if cached.is_file():
                    result[k] = FeatureSet(self.convention(k), load_stats(cached)["features"])
                    todo.remove(k)
        if todo:
            chunks: dict[str, list[np.ndarray]] = {k: [] for k in todo}
            batches = (self._folder_batches(src) if src.kind == "folder" else
                       (self.render(src.G, seeds) for seeds in self._seed_batches(f"{src.spec}: rendering")))
            for imgs in batches:
                for k, v in self._extract(imgs, tuple(todo)).items():
                    chunks[k].append(v)
            for k in todo:
                result[k] = FeatureSet(self.convention(k), np.concatenate(chunks[k]))
                if src.kind == "folder":
                    feats = result[k].features
                    header = {"convention": result[k].convention, "source_hash": src.ident, "num": len(feats)}
                    cached = self._cache_path(src, k)
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    save_stats(cached, header, *M.feature_stats(feats), feats, None)
        return result

    def _cache_path(self, src: Source, kind: str) -> Path:
        conv = hashlib.sha256(json.dumps(self.convention(kind), sort_keys=True).encode()).hexdigest()
        return cache_dir() / f"{src.ident.split(':')[-1][:24]}-{kind}-{conv[:12]}.npz"

    def _from_stats(self, src: Source, kind: str) -> FeatureSet:
        header = src.stats["header"]
        conv = header.get("convention" if kind == "inception" else "vgg_convention")
        run = self.convention(kind)
        if conv is None:
            raise UsageError(f"statistics file {src.spec} holds no {kind} features")
        diff = [f"{key}={conv.get(key)!r} (this run: {run[key]!r})" for key in run if conv.get(key) != run[key]]
        if diff:
            raise UsageError(f"statistics file {src.spec} was computed with a different convention: {', '.join(diff)}; "
                             f"match it (--resize, --inception, sizes) or recompute the statistics")
        if kind == "inception":
            return FeatureSet(conv, src.stats["features"], src.stats["mu"], src.stats["sigma"], header.get("num"))
        if src.stats["vgg_features"] is None:
            raise UsageError(f"statistics file {src.spec} holds no VGG16 features (needed for pr)")
        return FeatureSet(conv, src.stats["vgg_features"])

    # ------------------------------------------------------------------------------ metrics
    def comparable(self, metric: str) -> tuple[bool, list[str]]:
        why = []
        if self.a.allow_random_weights:
            why.append("--allow-random-weights (tests only)")
        for key, std in STANDARD_SIZES.items():
            if getattr(self.a, key) != std:
                why.append(f"--{key.replace('_', '-')} {getattr(self.a, key)} (standard: {std})")
        lpips = self._perceptual is not None and self._perceptual.kind == "lpips-vgg-v0.1"
        if metric in ("ppl", "perceptual") and not lpips:
            why.append("perceptual distance is vgg-unit, not LPIPS (LPIPS heads not found)")
        return not why, why

    def line(self, metric: str, value: float, gen: Source, ref: Source | None, **extra: Any) -> dict:
        ok, why = self.comparable(metric)
        out = {"metric": metric, "value": value, **extra, "gen": gen.spec, "gen_hash": gen.ident,
               "ref": None if ref is None else ref.spec, "ref_hash": None if ref is None else ref.ident,
               "truncation": self.a.trunc, "seed": self.a.seed, "comparable": ok}
        if gen.kind == "generator" and ref is not None and ref.kind == "generator":
            out["noise"] = "random, seeded per sample; both generators get the same maps"
        elif gen.kind == "generator" or (ref is not None and ref.kind == "generator"):
            out["noise"] = "random, seeded per sample"
        if not ok:
            out["not_comparable_because"] = why
        return out


def _sizes(n_gen: int | None, n_ref: int | None) -> dict:
    return {"num_samples": n_gen, "num_ref": n_ref}


def evaluate(ev: Evaluator, gen: Source, ref: Source | None, metrics: list[str]) -> Iterator[dict]:
    a = ev.a
    kinds = tuple(k for k, used in (("inception", {"fid", "kid"} & set(metrics)), ("vgg", "pr" in metrics)) if used)
    if (kinds or "fidelity" in metrics) and ref is None:
        raise UsageError(f"metrics {', '.join(m for m in metrics if m not in ('ppl', 'complexity'))} need --ref")
    for m in ("ppl", "complexity", "fidelity"):
        if m in metrics and gen.kind != "generator":
            raise UsageError(f"{m} needs a generator as --gen, got a {gen.kind} ({gen.spec})")
    if "fidelity" in metrics and ref.kind != "generator":
        raise UsageError(f"fidelity needs a generator as --ref (the teacher), got a {ref.kind} ({ref.spec})")
    if "kid" in metrics or "pr" in metrics:
        for src in (gen, ref):
            if src.kind == "stats" and src.stats["features"] is None and "kid" in metrics:
                raise UsageError(f"kid needs features, but statistics file {src.spec} holds only mean/covariance")

    fidelity: dict[str, list[float]] = {"psnr": [], "l1": [], "perceptual": []}
    if gen.kind == "generator" and ref is not None and ref.kind == "generator" and (kinds or "fidelity" in metrics):
        if (gen.G.z_dim, gen.G.w_dim) != (ref.G.z_dim, ref.G.w_dim):
            raise UsageError(f"{gen.spec} (z {gen.G.z_dim}, w {gen.G.w_dim}) and {ref.spec} (z {ref.G.z_dim}, "
                             f"w {ref.G.w_dim}) do not share a latent space")
        chunks: dict[str, dict[str, list]] = {"gen": {k: [] for k in kinds}, "ref": {k: [] for k in kinds}}
        for seeds in ev._seed_batches(f"{gen.spec} vs {ref.spec}"):
            img_g, img_r = ev.render_pair(gen.G, ref.G, seeds)
            for side, imgs in (("gen", img_g), ("ref", img_r)):
                for k, v in ev._extract(imgs, kinds).items():
                    chunks[side][k].append(v)
            if "fidelity" in metrics:
                size = min(img_g.shape[-1], img_r.shape[-1])  # compare at the smaller resolution (area)
                g = F.interpolate(img_g, size=(size, size), mode="area") if img_g.shape[-1] != size else img_g
                r = F.interpolate(img_r, size=(size, size), mode="area") if img_r.shape[-1] != size else img_r
                fidelity["psnr"] += psnr_db(g, r).tolist()
                fidelity["l1"] += ((g.clamp(-1, 1) - r.clamp(-1, 1)).abs() / 2).flatten(1).mean(1).tolist()
                with torch.no_grad():
                    fidelity["perceptual"] += ev.perceptual()(g, r).tolist()
        fg = {k: FeatureSet(ev.convention(k), np.concatenate(chunks["gen"][k])) for k in kinds}
        fr = {k: FeatureSet(ev.convention(k), np.concatenate(chunks["ref"][k])) for k in kinds}
    else:
        fg = ev.features(gen, kinds) if kinds else {}
        fr = ev.features(ref, kinds) if kinds else {}

    if "fid" in metrics:
        x, y = fg["inception"], fr["inception"]
        both = x.features is not None and y.features is not None
        value = M.fid_from_features(x.features, y.features) if both else M.frechet_distance(*x.moments(), *y.moments())
        yield ev.line("fid", value, gen, ref, implementation=FID_IMPL,
                      **_sizes(x.n, y.n), resize=a.resize, convention=x.convention)
    if "kid" in metrics:
        x, y = fg["inception"], fr["inception"]
        mean, std, s = M.kid(x.features, y.features, a.kid_subsets, a.kid_subset_size, seed=a.seed)
        yield ev.line("kid", mean, gen, ref, std=std, implementation=f"mobilestylegan.metrics.measures.kid: unbiased MMD^2, "
                      f"kernel (x.y/d+1)^3, {a.kid_subsets} subsets of {s}", **_sizes(x.n, y.n), resize=a.resize,
                      convention=x.convention)
    if "pr" in metrics:
        x, y = fg["vgg"], fr["vgg"]
        p, r = M.precision_recall(x.features, y.features, k=3, device=a.device)
        impl = "mobilestylegan.metrics.measures.precision_recall: k-NN (k=3) manifolds, Kynkaanniemi et al. 2019"
        for name, value in (("precision", p), ("recall", r)):
            yield ev.line(name, value, gen, ref, implementation=impl, **_sizes(x.n, y.n), resize=a.resize,
                          convention=x.convention)
    if "fidelity" in metrics:
        for name, vals in fidelity.items():
            v = np.asarray(vals, dtype=np.float64)
            if name == "psnr":
                desc = "per-latent PSNR in dB, images clamped to [-1,1] and measured on [0,1] (peak 1, MSE floor 1e-10)"
            elif name == "l1":
                desc = "per-latent mean |a-b| on [0,1]"
            else:
                desc = f"per-latent {ev.perceptual().kind} distance at {a.lpips_size}px (area/bilinear resize)"
            yield ev.line(name, float(v.mean()), gen, ref, std=float(v.std()), implementation=desc,
                          **_sizes(len(v), len(v)), resolution=min(gen.G.img_resolution, ref.G.img_resolution))
    if "ppl" in metrics:
        value, info = ppl(ev, gen)
        yield ev.line("ppl", value, gen, None, **info, **_sizes(a.num, None))
    if "complexity" in metrics:
        yield from complexity(ev, gen)


@torch.no_grad()
def _crop(img: torch.Tensor) -> torch.Tensor:
    c = img.shape[-2] // 8
    return img[:, :, 3 * c:7 * c, 2 * c:6 * c]


@torch.no_grad()
def ppl(ev: Evaluator, gen: Source) -> tuple[float, dict]:
    """Perceptual path length in W (StyleGAN): distance(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2."""
    a, eps, G = ev.a, ev.a.ppl_eps, gen.G
    dist = ev.perceptual()
    values: list[float] = []
    for seeds in ev._seed_batches(f"{gen.spec}: ppl"):
        z = seeded_z([2 * s for s in seeds] + [2 * s + 1 for s in seeds], G.z_dim).to(a.device)
        w0, w1 = G.mapping(z, truncation_psi=a.trunc).chunk(2)
        if a.ppl_sampling == "full":
            t = torch.stack([torch.rand([], generator=torch.Generator().manual_seed(_PPL_STREAM + s)) for s in seeds])
        else:
            t = torch.zeros(len(seeds))
        t = t.to(a.device).view(-1, 1, 1)
        noise = ev._noise(G, seeds)
        noise2 = None if noise is None else [None if n is None else torch.cat([n, n]) for n in noise]
        img = G.synthesis(torch.cat([w0.lerp(w1, t), w0.lerp(w1, t + eps)]), noise=noise2).float()
        if a.ppl_crop:
            img = _crop(img)
        img0, img1 = img.chunk(2)
        values += (dist(img0, img1) / eps**2).double().cpu().tolist()
    crop = "rows 3/8..7/8, cols 2/8..6/8 (StyleGAN's face crop)" if a.ppl_crop else "none"
    return M.ppl_filtered_mean(np.asarray(values)), {
        "implementation": f"W-space PPL, eps={eps:g}, t~{'U(0,1)' if a.ppl_sampling == 'full' else '0 (end)'}, "
                          f"distance / eps^2, mean over the 1st..99th percentile",
        "distance": f"{dist.kind} at {a.lpips_size}px (area/bilinear resize)", "crop": crop}


def complexity(ev: Evaluator, gen: Source) -> Iterator[dict]:
    from mobilestylegan.student.complexity import count_macs, count_params

    G = gen.G
    ws = G.mapping(seeded_z([ev.a.seed], G.z_dim).to(ev.a.device), truncation_psi=ev.a.trunc)
    macs = count_macs(lambda: G.synthesis(ws))
    yield ev.line("params", count_params(G.synthesis), gen, None, mapping_params=count_params(G.mapping),
                  implementation="synthesis parameters (every parameter, auxiliary heads included)")
    yield ev.line("macs", macs["macs"], gen, None, macs_paper=macs["macs_paper"],
                  implementation="synthesis MACs per image (FlopCounterMode / 2, transposed convs on their input grid; "
                                 "macs_paper counts them on the 2x output grid), batch 1, inference path")


# ------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilestylegan-eval", description="Evaluate generators with stated conventions.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gen", action="append", required=True, metavar="SOURCE",
                   help="generator, image folder or statistics file to evaluate (repeat for several)")
    p.add_argument("--ref", metavar="SOURCE", help="reference: image folder, statistics file or generator (teacher)")
    p.add_argument("--metrics", default="fid,kid", help=f"comma-separated from {', '.join(METRICS)} (default fid,kid)")
    p.add_argument("--num", type=int, default=50000, help="samples per generator (default 50000; folders: all images)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i (default 0)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    p.add_argument("--resize", choices=["clean", "legacy"], default="clean",
                   help="clean: uint8 + PIL bicubic (clean-fid); legacy: float + bilinear (pytorch-fid)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", type=Path, help="append one JSON line per metric to this file")
    p.add_argument("--save-ref-stats", type=Path, metavar="FILE.npz", help="write the reference's statistics here")
    p.add_argument("--inception", help="pt_inception-2015-12-05-6726825d.pth (default: $MOBILESTYLEGAN_INCEPTION or "
                                       "~/.cache/mobilestylegan/weights/)")
    p.add_argument("--vgg", help="vgg16-397923af.pth (default: $MOBILESTYLEGAN_VGG16 or "
                                 "~/.cache/mobilestylegan/weights/)")
    p.add_argument("--lpips", help="LPIPS heads lpips/weights/v0.1/vgg.pth (default: $MOBILESTYLEGAN_LPIPS or an "
                                   "installed lpips package; without them PPL uses the vgg-unit distance)")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="TESTS ONLY: seeded random Inception/VGG weights when files are missing; every number is "
                        "marked comparable=false")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--ppl-eps", type=float, default=1e-4)
    p.add_argument("--ppl-sampling", choices=["full", "end"], default="full", help="t ~ U(0,1) (full) or t = 0 (end)")
    p.add_argument("--no-ppl-crop", dest="ppl_crop", action="store_false", help="no StyleGAN face crop before PPL")
    p.add_argument("--inception-size", type=int, default=299, help="non-standard values make numbers non-comparable")
    p.add_argument("--pr-size", type=int, default=224, help="VGG16 input for precision/recall (standard 224)")
    p.add_argument("--lpips-size", type=int, default=256, help="perceptual-distance input for ppl/fidelity (256)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _validate(a: argparse.Namespace) -> list[str]:
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UsageError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}")
    for name, low in (("num", 2), ("batch_size", 1), ("kid_subsets", 1), ("kid_subset_size", 2),
                      ("inception_size", 75), ("pr_size", 32), ("lpips_size", 16)):
        if getattr(a, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(a, name)}")
    if not 0 < a.ppl_eps < 1:
        raise UsageError(f"--ppl-eps must be in (0, 1), got {a.ppl_eps}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    for path in (a.out, a.save_ref_stats):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"output directory {path.parent} does not exist")
    if a.save_ref_stats is not None and a.ref is None:
        raise UsageError("--save-ref-stats needs --ref")
    return list(dict.fromkeys(metrics))


def format_table(lines: list[dict]) -> str:
    rows = [("gen", "metric", "value", "std", "n", "comparable")]
    for d in lines:
        v = d["value"]
        if isinstance(v, float):
            value = f"{v:.4g}" if abs(v) < 1e6 else f"{v:.4e}"
        else:
            value = str(v)
        std = f"{d['std']:.3g}" if "std" in d else ""
        rows.append((Path(d["gen"]).name or d["gen"], d["metric"], value, std, str(d.get("num_samples") or ""),
                     "yes" if d["comparable"] else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(a: argparse.Namespace) -> list[dict]:
    metrics = _validate(a)
    ev = Evaluator(a, metrics)
    ref = open_source(a.ref, a.device) if a.ref else None
    out: list[dict] = []
    for spec in a.gen:
        gen = open_source(spec, a.device)
        for line in evaluate(ev, gen, ref, metrics):
            out.append(line)
            if a.out is not None:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(line) + "\n")
    if a.save_ref_stats is not None:
        _save_ref_stats(ev, ref, a.save_ref_stats, "pr" in metrics)
    return out


def _save_ref_stats(ev: Evaluator, ref: Source, path: Path, with_vgg: bool) -> None:
    kinds = ("inception", "vgg") if with_vgg else ("inception",)
    feats = ev.features(ref, kinds)
    inc = feats["inception"]
    header = {"convention": inc.convention, "vgg_convention": feats["vgg"].convention if with_vgg else None,
              "source": ref.spec, "source_hash": ref.ident, "num": inc.n, "seed": ev.a.seed, "truncation": ev.a.trunc}
    save_stats(path, header, *inc.moments(), inc.features, feats["vgg"].features if with_vgg else None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        lines = run(args)
    except (UsageError, CheckpointError, OutputPathError, InceptionWeightsNotFoundError, VGGWeightsNotFoundError,
            FileNotFoundError) as err:
        print(f"mobilestylegan-eval: error: {err}", file=sys.stderr)
        return 2
    print(format_table(lines))
    if args.out is not None:
        print(f"appended {len(lines)} line(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
