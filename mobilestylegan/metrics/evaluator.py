"""The evaluator: options, lazily loaded feature networks, seeded rendering and feature extraction, and the JSON
line every metric value is reported in (with whether it is comparable with published numbers, and why not)."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mobilestylegan.errors import UsageError
from mobilestylegan.metrics import measures as M
from mobilestylegan.metrics.sources import Source, cache_dir, load_stats, save_stats
from mobilestylegan.nets.inception import FIDInceptionV3, load_inception, preprocess
from mobilestylegan.nets.lpips import PerceptualDistance, find_lpips_weights, load_lpips_heads
from mobilestylegan.nets.vgg import VGG16Full, load_vgg16_full
from mobilestylegan.student.sampling import seeded_z
from teacher.fs import sha256_file

STANDARD_SIZES = {"inception_size": 299, "pr_size": 224, "lpips_size": 256}
# Independent random streams per sample: z uses seed + i itself (seeded_z).
NOISE_STREAM, PPL_STREAM = 1 << 32, 2 << 32


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate (the ``mobilestylegan-eval`` options of the same names).

    Args:
        num: Samples per generator (folders: all their images). seed: Sample i uses ``seeded_z(seed + i)``.
        trunc: Truncation psi. resize: ``clean`` (uint8 + PIL bicubic) or ``legacy`` (float + bilinear).
        batch_size / device / quiet: How to run.
        inception / vgg / lpips: Weight files (None: the default locations). allow_random_weights: Seeded random
            Inception/VGG weights when no file is found (tests only; every line is marked not comparable).
        kid_subsets / kid_subset_size: KID's subsets. ppl_eps / ppl_sampling / ppl_crop: PPL's epsilon, t sampling
            (``full``: U(0, 1), ``end``: 0) and StyleGAN's face crop.
        inception_size / pr_size / lpips_size: Network input sizes (non-standard values: not comparable).
    """

    num: int = 50000
    seed: int = 0
    trunc: float = 1.0
    resize: str = "clean"
    batch_size: int = 16
    device: str = "cpu"
    inception: str | None = None
    vgg: str | None = None
    lpips: str | None = None
    allow_random_weights: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    ppl_eps: float = 1e-4
    ppl_sampling: str = "full"
    ppl_crop: bool = True
    inception_size: int = 299
    pr_size: int = 224
    lpips_size: int = 256
    quiet: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> EvalOptions:
        """The options of the parsed ``mobilestylegan-eval`` arguments of the same names."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})


@dataclass
class FeatureSet:
    """Features of one source under one convention (``features`` None for mean/covariance-only stats)."""

    convention: dict
    features: np.ndarray | None
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    count: int | None = None  # sample count of a moments-only statistics file

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance: the stored ones, else computed from the features (and then kept)."""
        if self.mu is None:
            self.mu, self.sigma = M.feature_stats(self.features)
        return self.mu, self.sigma

    @property
    def n(self) -> int | None:
        """How many samples the features (or the moments) describe."""
        return self.count if self.features is None else len(self.features)


class Evaluator:
    """Holds the options and the lazily loaded networks; renders, extracts features and writes metric lines."""

    def __init__(self, options: EvalOptions, metrics: list[str]) -> None:
        self.a = options
        self.need_classifier = "pr" in metrics  # fc1/fc2 are 120M parameters: only for precision/recall
        self._inception = self._vgg = self._perceptual = None
        self.weights: dict[str, str] = {}

    # ------------------------------------------------------------------------------ networks
    def inception(self) -> FIDInceptionV3:
        """The FID Inception on the evaluation device (loaded on first use)."""
        if self._inception is None:
            net, self.weights["inception"] = load_inception(self.a.inception, self.a.allow_random_weights)
            self._inception = net.to(self.a.device)
        return self._inception

    def vgg(self) -> VGG16Full:
        """VGG16 on the evaluation device, with its classifier when precision/recall was asked for."""
        if self._vgg is None:
            net, self.weights["vgg16"] = load_vgg16_full(
                self.a.vgg, self.a.allow_random_weights, classifier=self.need_classifier
            )
            self._vgg = net.to(self.a.device)
        return self._vgg

    def perceptual(self) -> PerceptualDistance:
        """LPIPS-VGG when its heads are found, else the unit-normalised VGG16 distance (see ``comparable``)."""
        if self._perceptual is None:
            lpips_path = find_lpips_weights(self.a.lpips)
            heads = load_lpips_heads(lpips_path) if lpips_path else None
            if lpips_path:
                self.weights["lpips"] = sha256_file(lpips_path)
            self._perceptual = PerceptualDistance(self.vgg(), heads, self.a.lpips_size).to(self.a.device)
        return self._perceptual

    def convention(self, kind: str) -> dict:
        """What the ``inception`` or ``vgg`` features depend on: network, weights, resize, input size."""
        a = self.a
        if kind == "inception":
            self.inception()
            return {
                "network": "pt_inception-2015-12-05 (pytorch-fid port), pool3 2048-d",
                "weights": self.weights["inception"],
                "resize": a.resize,
                "size": a.inception_size,
            }
        self.vgg()
        return {
            "network": "vgg16 fc2 4096-d after ReLU (torchvision vgg16-397923af)",
            "weights": self.weights["vgg16"],
            "resize": a.resize,
            "size": a.pr_size,
        }

    # ------------------------------------------------------------------------------ rendering
    def seeded_noise(self, G: torch.nn.Module, seeds: list[int]) -> list[torch.Tensor | None] | None:
        """Per-sample seeded random noise maps of ``G`` (drawn on the CPU: identical on every device), on the
        evaluation device; None for a generator without noise inputs."""
        if not hasattr(G.synthesis, "make_noise"):
            return None
        per = [
            G.synthesis.make_noise(1, "random", device="cpu", generator=torch.Generator().manual_seed(NOISE_STREAM + s))
            for s in seeds
        ]
        return [None if maps[0] is None else torch.cat(maps).to(self.a.device) for maps in zip(*per)]

    @torch.no_grad()
    def render(self, G: torch.nn.Module, seeds: list[int]) -> torch.Tensor:
        """The images of ``seeds`` (truncated, with their seeded noise), float32 ``[N, 3, R, R]``."""
        ws = G.mapping(seeded_z(seeds, G.z_dim).to(self.a.device), truncation_psi=self.a.trunc)
        return G.synthesis(ws, noise=self.seeded_noise(G, seeds), inference=True).float()

    @torch.no_grad()
    def render_pair(
        self, A: torch.nn.Module, B: torch.nn.Module, seeds: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same z, same w (B's mapping, one w broadcast to each network's num_ws), same noise maps."""
        from mobilestylegan.student.generator import StudentGenerator, teacher_noise_for_student

        w = B.mapping(seeded_z(seeds, B.z_dim).to(self.a.device), truncation_psi=self.a.trunc)[:, 0]
        shapes_a, shapes_b = A.synthesis.noise_shapes, B.synthesis.noise_shapes
        try:
            if list(shapes_a) == list(shapes_b):
                noise_b = noise_a = self.seeded_noise(B, seeds)
            elif isinstance(A, StudentGenerator) and not isinstance(B, StudentGenerator):
                noise_b = self.seeded_noise(B, seeds)
                noise_a = teacher_noise_for_student(noise_b, A.synthesis)
            elif isinstance(B, StudentGenerator) and not isinstance(A, StudentGenerator):
                noise_a = self.seeded_noise(A, seeds)
                noise_b = teacher_noise_for_student(noise_a, B.synthesis)
            else:
                raise ValueError(f"noise layers {len(shapes_a)} vs {len(shapes_b)} do not correspond")
        except ValueError as err:
            raise UsageError(f"cannot give both generators the same noise: {err}") from None
        img_a = A.synthesis(w[:, None].expand(-1, A.num_ws, -1), noise=noise_a, inference=True).float()
        img_b = B.synthesis(w[:, None].expand(-1, B.num_ws, -1), noise=noise_b, inference=True).float()
        return img_a, img_b

    def seed_batches(self, desc: str) -> Iterator[list[int]]:
        """The seeds of the ``--num`` samples, ``--batch-size`` at a time, with a progress bar titled ``desc``."""
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
        for i in tqdm(
            range(0, len(src.files), b), desc=f"{src.spec}: reading", unit="batch", leave=False, disable=self.a.quiet
        ):
            batch = []
            for f in src.files[i : i + b]:
                with Image.open(f) as im:
                    arr = np.array(im.convert("RGB"))  # [H, W, 3] uint8
                batch.append(torch.from_numpy(arr).permute(2, 0, 1).float().div(127.5).sub(1))
            yield batch

    # ------------------------------------------------------------------------------ features
    @torch.no_grad()
    def extract(self, imgs: torch.Tensor | list[torch.Tensor], kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Images ``[N, 3, H, W]`` (or a list of ``[3, H, W]``) in [-1, 1] -> {kind: features [N, d]} (float64)."""
        out = {}
        if "inception" in kinds:
            x = torch.cat([preprocess(im[None], self.a.resize, self.a.inception_size) for im in imgs])
            out["inception"] = self.inception()(x.to(self.a.device)).double().cpu().numpy()
        if "vgg" in kinds:
            x = torch.cat([preprocess(im[None], self.a.resize, self.a.pr_size) for im in imgs])
            out["vgg"] = self.vgg().fc2(x.to(self.a.device) * 2 - 1).double().cpu().numpy()
        return out

    def save_reference_stats(self, ref: Source, path: Path, with_vgg: bool) -> None:
        """Write ``ref``'s feature statistics to ``path`` (Inception moments and features, VGG features with
        ``with_vgg``), with a header naming the conventions, the source and its hash, the count, seed and truncation,
        so a later run can use them as its reference."""
        kinds = ("inception", "vgg") if with_vgg else ("inception",)
        feats = self.features(ref, kinds)
        inc = feats["inception"]
        header = {
            "convention": inc.convention,
            "vgg_convention": feats["vgg"].convention if with_vgg else None,
            "source": ref.spec,
            "source_hash": ref.ident,
            "num": inc.n,
            "seed": self.a.seed,
            "truncation": self.a.trunc,
        }
        save_stats(path, header, *inc.moments(), inc.features, feats["vgg"].features if with_vgg else None)

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
            batches = (
                self._folder_batches(src)
                if src.kind == "folder"
                else (self.render(src.G, seeds) for seeds in self.seed_batches(f"{src.spec}: rendering"))
            )
            for imgs in batches:
                for k, v in self.extract(imgs, tuple(todo)).items():
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
            raise UsageError(
                f"statistics file {src.spec} was computed with a different convention: {', '.join(diff)}; "
                f"match it (--resize, --inception, sizes) or recompute the statistics"
            )
        if kind == "inception":
            return FeatureSet(conv, src.stats["features"], src.stats["mu"], src.stats["sigma"], header.get("num"))
        if src.stats["vgg_features"] is None:
            raise UsageError(f"statistics file {src.spec} holds no VGG16 features (needed for pr)")
        return FeatureSet(conv, src.stats["vgg_features"])

    # ------------------------------------------------------------------------------ metrics
    def comparable(self, metric: str) -> tuple[bool, list[str]]:
        """Whether ``metric``'s value can be compared with published numbers, and the reasons it cannot."""
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
        """The JSON line of one metric value: the value, ``extra``, both sources, the sampling and comparability."""
        ok, why = self.comparable(metric)
        out = {
            "metric": metric,
            "value": value,
            **extra,
            "gen": gen.spec,
            "gen_hash": gen.ident,
            "ref": None if ref is None else ref.spec,
            "ref_hash": None if ref is None else ref.ident,
            "truncation": self.a.trunc,
            "seed": self.a.seed,
            "comparable": ok,
        }
        if gen.kind == "generator" and ref is not None and ref.kind == "generator":
            out["noise"] = "random, seeded per sample; both generators get the same maps"
        elif gen.kind == "generator" or (ref is not None and ref.kind == "generator"):
            out["noise"] = "random, seeded per sample"
        if not ok:
            out["not_comparable_because"] = why
        return out
