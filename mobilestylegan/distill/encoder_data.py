"""The encoder's data, made by the generator itself: (face, latent) pairs in a pool, and a fixed validation set.

No face dataset: sample ``j`` of the pool draws its own latent from a counter-based stream
(:func:`~mobilestylegan.distill.triples.sample_generator` with ``(seed, 0, j, STREAM_ENCODER_POOL)``): ``z1`` (and
``z2`` when mixed), a truncation ``psi`` uniform in ``[psi_min, psi_max]``, with probability ``style_mixing_prob`` a
crossover entry from which ``w2`` takes over, and random noise maps. The generator renders the latent (in
``chunk``-sized pieces, optionally by an OpenVINO renderer, box-downsampled to the encoder's input in the graph) and
the pool keeps the image as uint8 (what a photo is) and the live W+ entries as float32.

A rendered chunk is saved at once under the pool directory (atomically, with a fingerprint of everything that made
it), so an interrupted run re-renders only what it lacks, and a finished pool is reused by every later run with the
same settings. Under DDP, chunk ``c`` is rendered by process ``c % world``; the processes then read every chunk from
the directory (one shared directory: single-node runs, or a shared file system).

The validation set is separate: ``val_size`` latents of their own stream, one truncation ``val_psi``, no mixing,
the generator's constant noise (how projection and the generator command render), rendered at
``val_resolution`` (the metric's) in float32.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mobilestylegan.distill.triples import sample_generator
from mobilestylegan.io.latent_space import generator_hash
from mobilestylegan.nets.resize import area_downsample
from teacher.fs import atomic_write

# Random streams of the encoder's data (apart from the distillation's 0..5).
STREAM_ENCODER_POOL, STREAM_ENCODER_VAL, STREAM_ENCODER_PICK, STREAM_ENCODER_AUG, STREAM_ENCODER_STATS = range(10, 15)

Renderer = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class LatentSampling:
    """How the pool's latents are drawn (see the module docstring)."""

    psi_min: float = 0.5
    psi_max: float = 1.0
    style_mixing_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.psi_min <= self.psi_max:
            raise ValueError(f"need 0 <= psi_min <= psi_max, got {self.psi_min}, {self.psi_max}")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError(f"style_mixing_prob must be within [0, 1], got {self.style_mixing_prob}")


@torch.no_grad()
def draw_latents(
    G: torch.nn.Module, seed: int, indices: range, sampling: LatentSampling, stream: int, noise_mode: str = "random"
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The W+ ``[n, num_ws, w_dim]`` and noise maps of samples ``indices`` (see the module docstring); each sample
    draws from its own generator, so any subset can be made alone. ``noise_mode="const"``: the generator's own
    constant maps; ``"none"``: no maps (an empty list; the latents are the same)."""
    z1, z2, psis, cross, noises = [], [], [], [], []
    for j in indices:
        g = sample_generator(seed, 0, j, stream)
        z1.append(torch.randn(G.z_dim, generator=g))
        z2.append(torch.randn(G.z_dim, generator=g))
        psis.append(sampling.psi_min + (sampling.psi_max - sampling.psi_min) * float(torch.rand(1, generator=g)))
        mixed = float(torch.rand(1, generator=g)) < sampling.style_mixing_prob
        c = int(torch.randint(1, G.num_ws, (1,), generator=g))
        cross.append(c if mixed else G.num_ws)
        if noise_mode == "random":
            noises.append(G.synthesis.make_noise(1, "random", device="cpu", generator=g))
    w_avg = G.mapping.w_avg.float().cpu()
    w1 = G.mapping.embed(torch.stack(z1)).float()
    w2 = G.mapping.embed(torch.stack(z2)).float()
    psi = torch.tensor(psis)[:, None]
    w1, w2 = w_avg + (w1 - w_avg) * psi, w_avg + (w2 - w_avg) * psi
    entry = torch.arange(G.num_ws)[None, :, None]
    ws = torch.where(entry >= torch.tensor(cross)[:, None, None], w2[:, None], w1[:, None])
    if noise_mode == "const":
        noise = [m.float().cpu() for m in G.synthesis.make_noise(len(indices), "const")]
    elif noise_mode == "none":
        noise = []
    else:
        noise = [torch.cat([n[k] for n in noises]) for k in range(len(noises[0]))]
    return ws, noise


def torch_renderer(G: torch.nn.Module, out_resolution: int, batch: int = 8) -> Renderer:
    """Render with the generator itself in float32 (on its device), area-downsampled to ``out_resolution``."""

    @torch.no_grad()
    def render(ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        dev = next(G.parameters()).device
        out = []
        for i in range(0, len(ws), batch):
            img = G.synthesis(ws[i : i + batch].to(dev), noise=[m[i : i + batch].to(dev) for m in noise])
            out.append(area_downsample(img.float(), out_resolution).cpu())
        return torch.cat(out)

    return render


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 (rounded, clipped), as a photo file holds them."""
    return ((img.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(img: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]."""
    return img.float() / 127.5 - 1


class EncoderPool:
    """``size`` rendered (image, live latent) pairs (see the module docstring).

    Args:
        G: The generator (mapping on the CPU).
        live: The W+ entries kept as targets.
        size / seed / sampling: Which samples.
        resolution: Side of the stored images (the encoder's input).
        chunk: Samples per rendered (and saved) piece.
        directory: Where chunks are saved and found (None: kept in memory only).
        renderer: ``(ws, noise) -> images`` at ``resolution``; None: :func:`torch_renderer`.
        progress: Show a progress bar while rendering.
    """

    def __init__(
        self,
        G: torch.nn.Module,
        live: list[int],
        size: int,
        seed: int,
        sampling: LatentSampling,
        resolution: int,
        chunk: int = 256,
        directory: str | Path | None = None,
        renderer: Renderer | None = None,
        progress: bool = True,
    ) -> None:
        if size < 1 or chunk < 1:
            raise ValueError(f"pool size and chunk must be >= 1, got {size}, {chunk}")
        self.G, self.live, self.size, self.seed, self.sampling = G, list(live), size, seed, sampling
        self.resolution, self.chunk, self.progress = resolution, chunk, progress
        self.directory = Path(directory) if directory is not None else None
        self.renderer = renderer
        self.images: torch.Tensor | None = None  # [size, 3, R, R] uint8
        self.ws: torch.Tensor | None = None  # [size, n_live, w_dim] float32
        self.rendered = 0  # samples this process rendered (not found on disk)

    def __len__(self) -> int:
        return self.size

    @property
    def filled(self) -> bool:
        return self.images is not None

    def fingerprint(self) -> str:
        """What makes a chunk's content: the generator, the draws and the stored form."""
        key = {
            "generator": generator_hash(self.G),
            "seed": self.seed,
            "sampling": asdict(self.sampling),
            "resolution": self.resolution,
            "chunk": self.chunk,
            "live": self.live,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def _chunk_path(self, c: int) -> Path | None:
        return None if self.directory is None else self.directory / f"{self.fingerprint()}_{c:05d}.pt"

    def _load_chunk(self, c: int) -> dict[str, torch.Tensor] | None:
        path = self._chunk_path(c)
        if path is None or not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file (a kill during a write cannot leave one; a full disk might): re-render
            return None
        n = min(self.chunk, self.size - c * self.chunk)
        if data.get("images") is None or len(data["images"]) != n:
            return None
        return data

    def _render_chunk(self, c: int) -> dict[str, torch.Tensor]:
        idx = range(c * self.chunk, min(self.size, (c + 1) * self.chunk))
        ws, noise = draw_latents(self.G, self.seed, idx, self.sampling, STREAM_ENCODER_POOL)
        render = self.renderer or torch_renderer(self.G, self.resolution)
        data = {"images": to_uint8(render(ws, noise)), "ws": ws[:, self.live].contiguous()}
        path = self._chunk_path(c)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: torch.save(data, tmp))
        self.rendered += len(idx)
        return data

    def fill(self, rank: int = 0, world: int = 1, barrier: Callable[[], None] | None = None) -> None:
        """Render the missing chunks of this process's share and save them; with several processes, wait for the
        others (``barrier``) and read every chunk from the directory."""
        if world > 1 and self.directory is None:
            raise ValueError("a pool shared by several processes needs a directory")
        chunks = range((self.size + self.chunk - 1) // self.chunk)
        mine = [c for c in chunks if c % world == rank]
        loaded: dict[int, dict[str, torch.Tensor]] = {}
        todo = []
        for c in mine:
            data = self._load_chunk(c)
            if data is None:
                todo.append(c)
            else:
                loaded[c] = data
        with tqdm(
            total=len(todo) * self.chunk,
            desc="rendering the encoder's pool",
            unit="face",
            disable=not self.progress or not todo,
        ) as bar:
            for c in todo:
                loaded[c] = self._render_chunk(c)
                bar.update(len(loaded[c]["images"]))
        if world > 1:
            barrier()
            for c in chunks:
                if c not in loaded:
                    data = self._load_chunk(c)
                    if data is None:
                        raise RuntimeError(
                            f"pool chunk {c} is missing in {self.directory} after every process rendered"
                        )
                    loaded[c] = data
        self.images = torch.cat([loaded[c]["images"] for c in chunks])
        self.ws = torch.cat([loaded[c]["ws"] for c in chunks])


@dataclass
class ValidationSet:
    """The fixed validation faces: ``images`` ``[n, 3, V, V]`` float32 in [-1, 1] at the metric's resolution,
    ``inputs`` uint8 at the encoder's input size (the images area-downsampled and quantised) and the live latents
    ``ws`` ``[n, n_live, w_dim]``."""

    images: torch.Tensor
    inputs: torch.Tensor
    ws: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


def validation_set(
    G: torch.nn.Module,
    live: list[int],
    size: int,
    seed: int,
    psi: float,
    resolution: int,
    input_size: int,
    renderer: Renderer | None = None,
) -> ValidationSet:
    """``size`` validation faces (see the module docstring) rendered by ``renderer`` (float32, at ``resolution``)
    or the generator itself."""
    sampling = LatentSampling(psi, psi, 0.0)
    ws, noise = draw_latents(G, seed, range(size), sampling, STREAM_ENCODER_VAL, noise_mode="const")
    images = (renderer or torch_renderer(G, resolution))(ws, noise).float()
    return ValidationSet(images, to_uint8(area_downsample(images, input_size)), ws[:, live].contiguous())


__all__ = [
    "EncoderPool",
    "LatentSampling",
    "ValidationSet",
    "draw_latents",
    "STREAM_ENCODER_STATS",
    "from_uint8",
    "to_uint8",
    "torch_renderer",
    "validation_set",
]
