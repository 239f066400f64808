"""Edit directions in W: GANSpace, covariance-weighted SeFa, and InterFaceGAN-style boundary files.

Every direction is a unit vector ``[w_dim]`` with a scale ``sigma``: the standard deviation of mapped latents
along it, so a strength of 1 moves a latent by one typical spread (strengths of +-3 span the faces the mapping
makes). An edit adds ``strength * sigma * d`` to the W+ entries of a layer range.

- ``ganspace``: principal components of ``w = mapping(z)`` for seeded z (Harkonen et al. 2020); sigma is the
  component's standard deviation.
- ``sefa``: the top eigenvectors of ``S^1/2 A^T A S^1/2``, mapped back by ``S^1/2``, where ``A`` stacks the style
  affines of every live layer and ``S`` is the covariance of w. Plain SeFa (Shen and Zhou 2021, ``A^T A`` alone)
  finds the directions the affines amplify most, which on the student point where w never varies (the image
  collapses); weighting by ``S`` keeps to directions the mapping uses.
- a file: ``.npy`` or ``.pt``, ``[w_dim]``, ``[1, w_dim]`` or ``[k, w_dim]`` (an InterFaceGAN boundary, e.g. for
  smile); ``FILE:j`` picks row j.

Directions of a generator are cached by its hash under ``cache_root()/directions``. Signs are fixed so that the
largest-magnitude coordinate is positive (deterministic across runs and machines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mobilestylegan.errors import UsageError
from mobilestylegan.io.arrays import save_npz
from mobilestylegan.io.latent_space import generator_hash, mapped_w
from mobilestylegan.student.routing import teacher_to_student_ws
from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from teacher.fs import cache_root

METHODS = ("ganspace", "sefa")
SAMPLES = 10_000


@dataclass
class Direction:
    vector: torch.Tensor  # [w_dim], unit norm
    sigma: float  # std of mapped w along it
    name: str


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors[torch.arange(len(vectors)), idx])
    return vectors * signs[:, None]


def style_affines(G: torch.nn.Module) -> torch.Tensor:
    """The stacked style affines ``A`` ``[sum of channels, w_dim]`` of the layers the image reads (linear maps,
    read out by applying each module to the basis vectors, so any weight gain is included)."""
    syn = G.synthesis
    skip: set[str] = set()
    if isinstance(syn, MobileSynthesisNetwork):  # the auxiliary heads never reach the image
        skip = {"to_img1"} | {f"layers.{i}.to_img" for i in range(len(syn.layers) - 1)}
    eye = torch.eye(G.w_dim)
    rows = []
    with torch.no_grad():
        for name, m in syn.named_modules():
            if not (name.endswith(".modulation") or name.endswith(".affine") or name in ("modulation", "affine")):
                continue
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            rows.append((m(eye) - m(torch.zeros(1, G.w_dim))).T.double())  # [channels, w_dim]
    if not rows:
        raise UsageError(f"no style affines found in {type(syn).__name__}: SeFa needs modulated layers")
    return torch.cat(rows)


def compute(
    G: torch.nn.Module, method: str, k: int = 10, samples: int = SAMPLES, weighted: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` directions ``[k, w_dim]`` (unit rows) and their sigmas ``[k]`` of ``method``."""
    w = mapped_w(G, samples)
    mean = w.mean(0)
    cov = (w - mean).T @ (w - mean) / (len(w) - 1)
    evals, evecs = torch.linalg.eigh(cov)
    if method == "ganspace":
        order = evals.argsort(descending=True)[:k]
        dirs = evecs[:, order].T
    elif method == "sefa":
        A = style_affines(G)
        root = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T  # S^1/2
        M = root @ (A.T @ A) @ root if weighted else A.T @ A
        mvals, mvecs = torch.linalg.eigh(M)
        order = mvals.argsort(descending=True)[:k]
        dirs = (root @ mvecs[:, order]).T if weighted else mvecs[:, order].T
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
    else:
        raise UsageError(f"direction method must be one of {', '.join(METHODS)}; got {method!r}")
    dirs = _fix_signs(dirs)
    sigmas = ((w - mean) @ dirs.T).std(0)
    return dirs.float(), sigmas.float()


def cached(G: torch.nn.Module, method: str, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`compute`, cached by the generator's hash (``cache_root()/directions/HASH-METHOD-K.npz``)."""
    path = cache_root() / "directions" / f"{generator_hash(G)}-{method}-{k}.npz"
    if path.is_file():
        with np.load(path) as f:
            return torch.from_numpy(f["directions"]), torch.from_numpy(f["sigmas"])
    dirs, sigmas = compute(G, method, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(path, directions=dirs.numpy(), sigmas=sigmas.numpy())
    return dirs, sigmas


def from_file(spec: str, G: torch.nn.Module) -> Direction:
    """``FILE[:row]`` -> a unit direction; sigma measured on ``G``'s mapped latents."""
    m = re.fullmatch(r"(.+?)(?::(\d+))?", spec)
    path, row = Path(m.group(1)), int(m.group(2) or 0)
    if not path.is_file():
        raise UsageError(f"direction file {path} does not exist (or the method is not one of {', '.join(METHODS)})")
    if path.suffix == ".pt":
        from teacher.formats import load_torch_container

        obj, _ = load_torch_container(path)
        arr = obj.numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"{path} is not a .npy array ({err})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != G.w_dim:
        raise UsageError(
            f"{path} holds a {list(arr.shape)} array; a direction file is [{G.w_dim}], [1, {G.w_dim}] or [k, {G.w_dim}]"
        )
    if not 0 <= row < len(arr):
        raise UsageError(f"{path} has {len(arr)} row(s); row {row} does not exist")
    v = torch.from_numpy(arr[row])
    if not torch.isfinite(v).all() or v.norm() == 0:
        raise UsageError(f"{path} row {row} is zero or not finite")
    v = v / v.norm()
    w = mapped_w(G, 2000)
    return Direction(v.float(), float(((w - w.mean(0)) @ v).std()), f"{path.name}:{row}")


def resolve(spec: str, G: torch.nn.Module) -> Direction:
    """``ganspace:J``, ``sefa:J`` or ``FILE[:row]`` -> a direction of ``G``."""
    method, _, index = spec.partition(":")
    if method in METHODS:
        if not index.isdigit():
            raise UsageError(f"direction {spec!r}: give the component, e.g. {method}:0")
        j = int(index)
        dirs, sigmas = cached(G, method, max(10, j + 1))
        return Direction(dirs[j], float(sigmas[j]), f"{method}:{j}")
    return from_file(spec, G)


def layer_indices(G: torch.nn.Module, teacher_range: tuple[int, int] | None) -> list[int]:
    """The W+ entries of ``G`` an edit over the teacher's entries ``a..b`` (inclusive) changes: the same entries for
    a StyleGAN2 generator, the student's entries of the same layer resolutions for a student; all for None."""
    if teacher_range is None:
        return list(range(G.num_ws))
    a, b = teacher_range
    if isinstance(G.synthesis, MobileSynthesisNetwork):
        return teacher_to_student_ws(list(range(a, b + 1)), G.num_ws)
    return [i for i in range(a, b + 1) if i < G.num_ws]


def apply(ws: torch.Tensor, d: Direction, strength: float, indices: list[int]) -> torch.Tensor:
    """``ws`` ``[N, num_ws, w_dim]`` moved by ``strength * sigma * d`` on ``indices``."""
    out = ws.clone()
    out[:, indices] += strength * d.sigma * d.vector.to(ws.dtype)
    return out
