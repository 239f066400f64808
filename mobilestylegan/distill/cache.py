"""A pool of pre-rendered triples, filled once on the training device and sampled without replacement."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields

import torch
from tqdm import tqdm

from mobilestylegan.distill.triples import (
    STREAM_POOL,
    Index,
    Styles,
    Triple,
    TripleSource,
    as_index,
    check_cpu_generator,
    sample_generator,
    shard,
)
from mobilestylegan.student.synthesis import StudentConfig


class CachedTripleSource:
    """A fixed pool of pre-rendered triples to train from when teacher renders are too slow for
    on-the-fly data (the CPU demo: one teacher render costs many student steps).

    ``size`` triples are drawn like :meth:`TripleSource.sample` (style mixing included) from a
    generator seeded with ``seed``, ``chunk`` at a time. :meth:`fill` renders them where the training
    runs (the teacher's device, e.g. the GPU; or with ``renderer``, e.g. OpenVINO on the CPU) and keeps
    them compactly on the CPU: w1, w2 and the crossover (the student's W+ is rebuilt from them), the
    student's noise maps, and only the finest teacher image (at the student's resolution) in
    ``storage_dtype``. :meth:`sample` / :meth:`sample_step` then draw a random subset without replacement,
    move it to the training device and rebuild the pyramid by area downsampling, returning the same
    :class:`Triple` as the live source.

    Storage: float16 keeps every pixel within a relative 2**-11 (<= 4.9e-4 absolute for images in
    [-1, 1], StyleGAN's range); downsampled levels only average those errors. With
    ``storage_dtype=torch.float32`` the triples are bit-identical to the live source's. About
    ``size * 6 * R * R`` bytes of images in float16 (4096 at 128 px: 400 MB) plus the noise maps
    (float32, about ``size * 8 * R * R * 2 / 3`` bytes).

    Args:
        source: The live source (teacher, student architecture, truncation, mixing).
        size: Number of triples in the pool.
        seed: Seed of the pool (the pool also depends on ``chunk``).
        chunk: Teacher batch while filling the pool.
        progress: Show a progress bar while rendering.
        storage_dtype: dtype of the stored images (float16 or float32).
        renderer: Stand-in for the teacher's synthesis network while filling (``(ws, noise) -> img``,
            e.g. :class:`mobilestylegan.distill.render.OpenVINOSynthesis`); None renders with the teacher.
    """

    def __init__(
        self,
        source: TripleSource,
        size: int,
        seed: int,
        chunk: int = 8,
        progress: bool = True,
        storage_dtype: torch.dtype = torch.float16,
        renderer: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        if size < 1 or chunk < 1:
            raise ValueError(f"size and chunk must be >= 1, got size={size}, chunk={chunk}")
        if storage_dtype not in (torch.float16, torch.float32):
            raise ValueError(f"storage_dtype must be torch.float16 or torch.float32, got {storage_dtype}")
        self.source, self.size, self.seed, self.chunk = source, size, seed, chunk
        self.progress, self.storage_dtype, self.renderer = progress, storage_dtype, renderer
        self.styles: Styles | None = None
        self.noise: list[torch.Tensor] = []
        self.images: torch.Tensor | None = None  # [size, 3, R, R] on the CPU once filled

    @property
    def filled(self) -> bool:
        return self.images is not None

    def fill(
        self,
        device: torch.device | str,
        rank: int = 0,
        world: int = 1,
        broadcast: Callable[[torch.Tensor, int], None] | None = None,
    ) -> CachedTripleSource:
        """Render the pool on ``device`` (the teacher must be there) and keep it on the CPU; returns self.

        With ``world`` > 1 processes each renders every ``world``-th chunk and ``broadcast(tensor, src)``
        (e.g. ``torch.distributed.broadcast``, called by every process in the same order) shares the
        images, so every process holds the same pool after rendering ``1 / world`` of it.
        """
        if world > 1 and broadcast is None:
            raise ValueError("filling a pool from several processes needs a broadcast function")
        g = torch.Generator().manual_seed(int(self.seed))
        src = self.source
        styles, noise, images, owners = [], [], [], []
        starts = list(range(0, self.size, self.chunk))
        mine = sum(1 for c in range(len(starts)) if c % world == rank)
        with tqdm(
            total=mine * self.chunk, desc="rendering teacher cache", unit="img", disable=not self.progress or rank != 0
        ) as bar:
            for c, start in enumerate(starts):  # every process draws every chunk: the same stream for all
                s, teacher_noise = src.draw(min(self.chunk, self.size - start), g, device)
                owner = c % world
                if owner == rank:
                    img = src.render_finest(src.teacher_ws(s), teacher_noise, synthesis=self.renderer)
                    images.append(img.to("cpu", self.storage_dtype))
                    bar.update(len(s.w1))
                else:
                    r = src.student_cfg.img_resolution
                    images.append(torch.empty(len(s.w1), 3, r, r, dtype=self.storage_dtype))
                styles.append(s.to("cpu"))
                noise.append([m.cpu() for m in src.student_noise(teacher_noise)])
                owners.append(owner)
        if world > 1:  # after rendering, so no process waits for another's renders chunk by chunk
            for img, owner in zip(images, owners):
                shared = img.to(device)
                broadcast(shared, owner)
                img.copy_(shared.cpu())
        self.styles = Styles(*(torch.cat([getattr(s, f.name) for s in styles]) for f in fields(Styles)))
        self.noise = [torch.cat(maps) for maps in zip(*noise)]
        self.images = torch.cat(images)
        self.renderer = None  # not needed again: free it (a compiled OpenVINO model holds its own buffers)
        return self

    def _pool(self) -> torch.Tensor:
        if self.images is None:
            raise RuntimeError("the triple cache is empty: call fill(device) first")
        return self.images

    def __len__(self) -> int:
        return self.size

    @property
    def student_cfg(self) -> StudentConfig:
        return self.source.student_cfg

    def to(self, device: torch.device | str) -> CachedTripleSource:
        """Move the teacher to ``device`` (the pool stays on the CPU); returns self."""
        self.source.to(device)
        return self

    def get(self, idx: Index, device: torch.device | str) -> Triple:
        """The pooled triples ``idx`` on ``device``."""
        pick = as_index(idx, torch.device("cpu"))
        finest = self._pool()[pick].to(device, torch.float32)
        return self.source.assemble(
            self.styles.subset(pick).to(device), [m[pick].to(device) for m in self.noise], finest
        )

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device | str) -> Triple:
        """``batch_size`` distinct pooled triples chosen with ``generator``."""
        check_cpu_generator(generator)
        self._check_batch(batch_size)
        return self.get(torch.randperm(self.size, generator=generator)[:batch_size], device)

    def sample_step(self, seed: int, step: int, global_batch: int, part: slice, device: torch.device | str) -> Triple:
        """Samples ``part`` of the ``global_batch`` distinct pooled triples of training step ``step`` (one
        permutation per step from ``sample_generator(seed, step, -1, STREAM_POOL)``)."""
        self._check_batch(global_batch)
        perm = torch.randperm(self.size, generator=sample_generator(seed, step, -1, STREAM_POOL))
        return self.get(perm[:global_batch][part], device)

    def _check_batch(self, batch_size: int) -> None:
        if not 1 <= batch_size <= self.size:
            raise ValueError(f"batch_size must be in [1, {self.size}] (the pool size), got {batch_size}")

    def calibration(self, n: int, seed: int, chunk: int, part: slice, device: torch.device | str) -> Iterator[Triple]:
        """The pool's first ``min(n, size)`` triples (those in ``part``), ``chunk`` at a time: no renders (``seed`` is
        unused)."""
        idx = range(min(n, self.size))[part]
        for start in range(idx.start, idx.stop, chunk):
            yield self.get(slice(start, min(start + chunk, idx.stop)), device)

    def fixed_set(self, n: int, seed: int, device: torch.device | str, part: slice = slice(None)) -> Triple:
        """The live source's validation set (held-out w's, rendered, never from the pool)."""
        return self.source.fixed_set(n, seed, device, part)

    def image_sum(
        self, n: int, seed: int, device: torch.device | str, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, int]:
        """``(sum, count)`` of process ``rank``'s share of :meth:`mean_image`'s samples: without style
        mixing the pool already holds ``size`` independent samples drawn like
        :meth:`TripleSource.mean_image`'s (its mean is used, accumulated in float64, no extra renders;
        ``n`` and ``seed`` are then unused and the processes split the pool); otherwise the live source's."""
        if self.source.style_mixing_prob > 0:
            return self.source.image_sum(n, seed, device, rank, world)
        pool = self._pool()
        idx = range(self.size)[shard(self.size, rank, world)]
        total = torch.zeros((1, *pool.shape[1:]), dtype=torch.float64)
        for i in range(idx.start, idx.stop, 512):
            total += pool[i : min(i + 512, idx.stop)].double().sum(0, keepdim=True)
        return total.to(device), len(idx)

    def mean_image(self, n: int, seed: int, device: torch.device | str) -> torch.Tensor:
        """The teacher's mean image ``[1, 3, R, R]`` (see :meth:`image_sum`)."""
        total, count = self.image_sum(n, seed, device)
        return (total / count).float()


__all__ = ["CachedTripleSource"]
