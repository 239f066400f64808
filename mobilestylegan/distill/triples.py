"""Distillation data: triples <W+, noise, teacher image pyramid>, rendered by the frozen teacher.

No dataset and no worker processes: :meth:`TripleSource.sample` draws latents and noise, renders the
teacher on the training device inside the training step and returns a :class:`Triple`. Any teacher
that follows the generator contract works (``mapping.embed``, ``mapping.w_avg``,
``synthesis(ws, noise=...)``, ``synthesis.make_noise``): a StyleGAN2 :class:`teacher.Generator`
or a :class:`~mobilestylegan.student.generator.StudentGenerator` such as the published ``ffhq-1024``.

Style mixing is defined by *resolution*, so the teacher and the student (whose W+ vectors have
different lengths) mix the same way: every W+ entry whose layer resolution (see
:func:`teacher_ws_resolution`, :func:`student_ws_resolution`) is >= the crossover takes w2.

Randomness: every random number comes from a CPU ``torch.Generator`` (then moved to the device), so the
same generator state reproduces the exact triples on any device. Training draws through
:func:`sample_generator`: sample ``i`` of step ``t`` has a stream of its own, so a sample's triple (and its
augmentation) depends neither on how many processes share the global batch nor on where a run resumed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from mobilestylegan.nets.resize import area_downsample
from mobilestylegan.student.generator import teacher_noise_for_student
from mobilestylegan.student.routing import student_ws_resolution, teacher_ws_resolution, ws_resolutions
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import dwt
from teacher.mapping import truncate

# Crossover of a sample without style mixing: above every layer resolution, so all entries take w1.
NO_MIXING = torch.iinfo(torch.int64).max

Index = torch.Tensor | slice | Sequence[int]

# Random streams of a training step (see sample_generator).
STREAM_TRIPLE, STREAM_POOL, STREAM_AUG_STUDENT, STREAM_AUG_REAL, STREAM_AUG_FAKE, STREAM_CALIBRATION = range(6)


def sample_generator(seed: int, step: int, index: int, stream: int) -> torch.Generator:
    """The CPU generator of sample ``index`` of training step ``step`` for one purpose (``stream``).

    Counter-based: the generator is seeded from ``(seed, step, index, stream)`` through numpy's
    ``SeedSequence`` (a hash designed for this), so streams are independent and any one of them can be
    made without drawing the others. A rank that renders samples 4..7 of a global batch of 8 therefore
    draws exactly what a single process rendering all 8 draws for them, and resuming at step ``t``
    needs no saved generator state. ``index = -1`` is the step's own stream (e.g. the pool permutation).
    """
    if min(seed, step) < 0 or index < -1:
        raise ValueError(f"sample_generator needs seed, step >= 0 and index >= -1, got {seed}, {step}, {index}")
    word = np.random.SeedSequence([int(seed), int(step), int(index) + 1, int(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(word))


def shard(n: int, rank: int, world: int) -> slice:
    """The contiguous part of ``range(n)`` that process ``rank`` of ``world`` handles (sizes differ by at most one)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return slice(rank * n // world, (rank + 1) * n // world)


def image_pyramid(finest: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Each level is the finest image box-downsampled to ``sizes[i]`` (see
    :func:`~mobilestylegan.nets.resize.area_downsample`). Box filters of power-of-two factors compose, so this
    equals (to float rounding) downsampling the teacher image directly."""
    return [area_downsample(finest, s) for s in sizes]


@dataclass
class Triple:
    """One batch of distillation data.

    Attributes:
        ws: ``[N, student_num_ws, w_dim]`` the student's W+.
        noise: The student's noise maps ``[N, 1, r, r]`` (4, 8, 8, 16, 16, ...), the teacher's own.
        images: Teacher image per student head, coarse to fine: ``[N, 3, 2r, 2r]`` for the head of
            wavelet resolution r = 4 .. R/2; the last is at the student's output resolution R.
        wavelets: ``dwt(images[i])``, ``[N, 12, r, r]``: the heads' targets.
    """

    ws: torch.Tensor
    noise: list[torch.Tensor]
    images: list[torch.Tensor]
    wavelets: list[torch.Tensor]

    def __len__(self) -> int:
        return self.ws.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Triple:
        mv = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Triple(
            mv(self.ws), [mv(n) for n in self.noise], [mv(i) for i in self.images], [mv(w) for w in self.wavelets]
        )

    def subset(self, idx: Index) -> Triple:
        """The samples ``idx`` (a slice, index list, index tensor or boolean mask)."""
        pick = lambda t: t[as_index(idx, t.device)]  # noqa: E731
        return Triple(
            pick(self.ws),
            [pick(n) for n in self.noise],
            [pick(i) for i in self.images],
            [pick(w) for w in self.wavelets],
        )


@dataclass
class Styles:
    """The style decisions of a batch: sample i uses ``w1[i]`` below and ``w2[i]`` at and above the
    resolution ``crossover[i]`` (``NO_MIXING``: w1 everywhere; w2 then equals w1).

    Attributes:
        w1: ``[N, w_dim]`` truncated w of z1.
        w2: ``[N, w_dim]`` truncated w of z2.
        crossover: ``[N]`` int64 crossover resolution.
    """

    w1: torch.Tensor
    w2: torch.Tensor
    crossover: torch.Tensor

    def mix(self, layer_resolutions: torch.Tensor) -> torch.Tensor:
        """W+ ``[N, L, w_dim]`` for a network whose entries have ``layer_resolutions`` ``[L]``."""
        res = layer_resolutions.to(self.crossover.device)
        take_w2 = res[None, :] >= self.crossover[:, None]  # [N, L]
        return torch.where(take_w2[:, :, None], self.w2[:, None], self.w1[:, None])

    def to(self, device: torch.device | str) -> Styles:
        return Styles(*(getattr(self, f.name).to(device) for f in fields(self)))

    def subset(self, idx: Index) -> Styles:
        return Styles(*(getattr(self, f.name)[as_index(idx, self.w1.device)] for f in fields(self)))


def as_index(idx: Index, device: torch.device) -> torch.Tensor | slice:
    """``idx`` as something that indexes a tensor's first axis on ``device``: a slice as it is, else a tensor."""
    return idx if isinstance(idx, slice) else torch.as_tensor(idx, device=device)


def check_cpu_generator(generator: torch.Generator) -> None:
    """A ValueError unless ``generator`` is a CPU ``torch.Generator`` (every random draw here is made on the CPU)."""
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(
            "pass a CPU torch.Generator (all randomness is drawn on the CPU, then moved, so a saved "
            f"state reproduces the same triples on any device), got {generator!r}"
        )


def _describe(teacher: nn.Module) -> str:
    return f"the teacher ({type(teacher).__name__}, {teacher.img_resolution}px, w_dim {teacher.w_dim})"


class TripleSource:
    """Renders distillation triples with a frozen teacher for a student architecture.

    The teacher is used as given (same device as the ``device`` passed to :meth:`sample`; it is not
    moved, frozen or put in eval mode here) and renders under ``torch.no_grad()``.

    Args:
        teacher: A generator following the contract (StyleGAN2 ``teacher.Generator`` or a
            ``StudentGenerator``), at least as large as the student.
        student_cfg: The student's architecture (its ``w_dim`` must be the teacher's).
        truncation_psi: Truncation of every w toward the teacher's ``mapping.w_avg`` (1 = none).
        style_mixing_prob: Probability that a sample mixes two styles.
        render_batch: Largest batch the teacher renders at once (None: the whole batch).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student_cfg: StudentConfig,
        truncation_psi: float = 1.0,
        style_mixing_prob: float = 0.9,
        render_batch: int | None = None,
    ) -> None:
        if not isinstance(student_cfg, StudentConfig):
            raise ValueError(f"student_cfg must be a StudentConfig, got {type(student_cfg).__name__}")
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {style_mixing_prob}")
        if render_batch is not None and render_batch < 1:
            raise ValueError(f"render_batch must be None or >= 1, got {render_batch}")
        self.teacher, self.student_cfg = teacher, student_cfg
        self.truncation_psi, self.style_mixing_prob, self.render_batch = truncation_psi, style_mixing_prob, render_batch
        # The student's layout (noise shapes, W+ length) without allocating weights.
        with torch.device("meta"):
            self._layout = MobileSynthesisNetwork(student_cfg)
        self._validate()
        self.head_resolutions = list(student_cfg.feature_resolutions)  # wavelet resolution r of each head
        self.image_resolutions = [2 * r for r in self.head_resolutions]  # 8 .. R
        self.crossovers = self.head_resolutions[1:]  # feature resolutions above 4
        self.teacher_resolutions = ws_resolutions(teacher.synthesis, teacher.num_ws)
        self.student_resolutions = ws_resolutions(self._layout, student_cfg.num_ws)
        self._fixed: dict[tuple[int, int, int, int], Triple] = {}
        # Stand-in for the teacher's synthesis network in fixed_set and image_sum (None: the teacher itself); it
        # must render the teacher's own numbers (e.g. OpenVINOSynthesis in f32), since validation measures against it.
        self.eval_synthesis: Callable[..., torch.Tensor] | None = None

    def _validate(self) -> None:
        t, s = self.teacher, self.student_cfg
        who = _describe(t)
        if t.w_dim != s.w_dim:
            raise ValueError(
                f"{who} and the student (w_dim {s.w_dim}) disagree on w_dim: the student takes the "
                f"teacher's w; build it with StudentConfig(w_dim={t.w_dim}, ...)"
            )
        rt, rs = t.img_resolution, s.img_resolution
        if rs > rt:
            raise ValueError(
                f"a {rs}-px student cannot learn from a {rt}-px teacher ({who}): use a student with "
                f"img_resolution <= {rt}"
            )
        ratio = rt // rs
        if rt % rs or ratio & (ratio - 1):
            raise ValueError(
                f"{who} and the {rs}-px student: the resolution ratio must be a power of two (the "
                f"pyramid is a box downsample); use a student at {rt} / 2**k px"
            )
        probe = [torch.empty(shape, device="meta") for shape in t.synthesis.noise_shapes]
        try:
            teacher_noise_for_student(probe, self._layout)
        except ValueError as e:
            raise ValueError(
                f"{who} cannot supply the {rs}-px student's noise ({e}); the student's noise layers "
                "(4, 8, 8, 16, 16, ...) must be a prefix of the teacher's"
            ) from e

    def to(self, device: torch.device | str) -> TripleSource:
        """Move the teacher (the source's only network) to ``device``; returns self. Cached
        validation sets stay where they were rendered (:meth:`fixed_set` moves what it returns)."""
        self.teacher.to(device)
        return self

    # -- drawing -------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[N, z_dim]`` -> truncated w ``[N, w_dim]`` with the teacher's mapping."""
        mapping = self.teacher.mapping
        return truncate(mapping.embed(z), mapping.w_avg, self.truncation_psi)

    def draw(
        self, batch_size: int, generator: torch.Generator, device: torch.device | str
    ) -> tuple[Styles, list[torch.Tensor]]:
        """Styles (with mixing) and the teacher's full noise list for one batch, all from ``generator``.

        Draw order: z1 ``[N, z_dim]``, z2, the mixing coin ``[N]``, the crossover index ``[N]``, then
        the teacher's ``make_noise``. z2 is drawn even without mixing, so the stream does not depend
        on the coins.
        """
        check_cpu_generator(generator)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        z_dim = self.teacher.mapping.z_dim
        z1 = torch.randn([batch_size, z_dim], generator=generator)
        z2 = torch.randn([batch_size, z_dim], generator=generator)
        mixed = torch.rand([batch_size], generator=generator) < self.style_mixing_prob
        pick = torch.randint(0, len(self.crossovers), [batch_size], generator=generator)
        noise = self.teacher.synthesis.make_noise(batch_size, "random", device="cpu", generator=generator)
        return self._styles(z1, z2, mixed, pick, noise, device)

    def draw_samples(
        self, generators: Sequence[torch.Generator], device: torch.device | str
    ) -> tuple[Styles, list[torch.Tensor]]:
        """Like :meth:`draw`, one sample per generator (each draws z1, z2, coin, crossover, noise in that
        order), so sample ``i`` depends only on ``generators[i]``."""
        if not generators:
            raise ValueError("draw_samples needs at least one generator")
        z_dim, parts = self.teacher.mapping.z_dim, []
        for g in generators:
            check_cpu_generator(g)
            parts.append(
                (
                    torch.randn([1, z_dim], generator=g),
                    torch.randn([1, z_dim], generator=g),
                    torch.rand([1], generator=g) < self.style_mixing_prob,
                    torch.randint(0, len(self.crossovers), [1], generator=g),
                    self.teacher.synthesis.make_noise(1, "random", device="cpu", generator=g),
                )
            )
        z1, z2, mixed, pick = (torch.cat([p[k] for p in parts]) for k in range(4))
        noise = [torch.cat(maps) for maps in zip(*(p[4] for p in parts))]
        return self._styles(z1, z2, mixed, pick, noise, device)

    def _styles(
        self,
        z1: torch.Tensor,
        z2: torch.Tensor,
        mixed: torch.Tensor,
        pick: torch.Tensor,
        noise: list[torch.Tensor],
        device: torch.device | str,
    ) -> tuple[Styles, list[torch.Tensor]]:
        crossover = torch.where(mixed, torch.tensor(self.crossovers)[pick], torch.full_like(pick, NO_MIXING))
        mixed = mixed.to(device)
        w1 = self.embed(z1.to(device))
        w2 = torch.where(mixed[:, None], self.embed(z2.to(device)), w1) if bool(mixed.any()) else w1
        return Styles(w1, w2, crossover.to(device)), [n.to(device) for n in noise]

    def _seeded_chunks(
        self, n: int, seed: int, chunk: int, part: slice = slice(None)
    ) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        """z and teacher noise for ``n`` samples drawn one after the other from ``seed`` (so sample i
        does not depend on ``n`` or ``chunk``), yielded ``chunk`` samples at a time on the CPU; only the
        samples in ``part`` are yielded (the others are drawn and dropped, so every part sees the same draws)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        g = torch.Generator().manual_seed(int(seed))
        z_dim = self.teacher.mapping.z_dim
        wanted = range(n)[part]
        zs, maps = [], []
        for i in range(wanted.stop if len(wanted) else 0):
            z = torch.randn([1, z_dim], generator=g)
            noise = self.teacher.synthesis.make_noise(1, "random", device="cpu", generator=g)
            if i in wanted:
                zs.append(z)
                maps.append(noise)
            if len(zs) == chunk or (zs and i == wanted.stop - 1):
                yield torch.cat(zs), [torch.cat(m) for m in zip(*maps)]
                zs, maps = [], []

    # -- rendering -----------------------------------------------------------------------------------
    def teacher_ws(self, styles: Styles) -> torch.Tensor:
        """The teacher's W+ ``[N, teacher_num_ws, w_dim]``."""
        return styles.mix(self.teacher_resolutions)

    def student_ws(self, styles: Styles) -> torch.Tensor:
        """The student's W+ ``[N, student_num_ws, w_dim]``."""
        return styles.mix(self.student_resolutions)

    def student_noise(self, teacher_noise: list[torch.Tensor]) -> list[torch.Tensor]:
        """The teacher's maps for the student's layers."""
        return list(teacher_noise_for_student(teacher_noise, self._layout))

    @torch.no_grad()
    def render_finest(
        self, ws: torch.Tensor, noise: list[torch.Tensor], synthesis: Callable[..., torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Teacher render of W+ ``ws`` with its ``noise``, box-downsampled to the student's resolution:
        ``[N, 3, R, R]``, in chunks of ``render_batch`` (each chunk's full-size image is dropped at once).
        ``synthesis`` stands in for the teacher's synthesis network (e.g. ``ov_render.OpenVINOSynthesis``)."""
        step = self.render_batch or ws.shape[0]
        if synthesis is None:  # the teacher itself: no gradients are needed here
            synthesis = functools.partial(self.teacher.synthesis, inference=True)
        out = []
        for i in range(0, ws.shape[0], step):
            img = synthesis(ws[i : i + step], noise=[m[i : i + step] for m in noise])
            out.append(area_downsample(img.float(), self.student_cfg.img_resolution))
        return torch.cat(out)

    def assemble(self, styles: Styles, student_noise: list[torch.Tensor], finest: torch.Tensor) -> Triple:
        """A :class:`Triple` from styles, the student's noise and the image at the student's resolution."""
        images = image_pyramid(finest, self.image_resolutions)
        return Triple(self.student_ws(styles), list(student_noise), images, [dwt(im) for im in images])

    def render(
        self, styles: Styles, teacher_noise: list[torch.Tensor], synthesis: Callable[..., torch.Tensor] | None = None
    ) -> Triple:
        finest = self.render_finest(self.teacher_ws(styles), teacher_noise, synthesis)
        return self.assemble(styles, self.student_noise(teacher_noise), finest)

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device | str) -> Triple:
        """A fresh batch with style mixing and random noise, every random number from ``generator``."""
        return self.render(*self.draw(batch_size, generator, device))

    def sample_step(self, seed: int, step: int, global_batch: int, part: slice, device: torch.device | str) -> Triple:
        """Samples ``part`` of the global batch of training step ``step``: sample i is drawn from
        ``sample_generator(seed, step, i, STREAM_TRIPLE)`` and only this part is rendered."""
        idx = range(global_batch)[part]
        return self.render(*self.draw_samples([sample_generator(seed, step, i, STREAM_TRIPLE) for i in idx], device))

    def calibration(self, n: int, seed: int, chunk: int, part: slice, device: torch.device | str) -> Iterator[Triple]:
        """The samples ``range(n)[part]`` of a calibration set (e.g. to solve the heads before training), ``chunk``
        at a time: sample i is drawn like a training sample from ``sample_generator(seed, 0, i, STREAM_CALIBRATION)``,
        a stream training never uses."""
        idx = range(n)[part]
        for start in range(idx.start, idx.stop, chunk):
            gens = [
                sample_generator(seed, 0, i, STREAM_CALIBRATION) for i in range(start, min(start + chunk, idx.stop))
            ]
            yield self.render(*self.draw_samples(gens, device))

    # -- evaluation ----------------------------------------------------------------------------------
    def fixed_set(self, n: int, seed: int, device: torch.device | str, part: slice = slice(None)) -> Triple:
        """A deterministic validation set: no style mixing, z and noise seeded per sample (the first k
        samples of ``fixed_set(n, s)`` are ``fixed_set(k, s)``), this source's truncation. The same in
        every run and process; rendered once per ``(n, seed, part)`` and cached on this object. ``part``
        (e.g. :func:`shard`) renders only those samples, equal to ``fixed_set(n, seed).subset(part)``."""
        idx = range(n)[part]
        key = (int(n), int(seed), idx.start, idx.stop)
        if key not in self._fixed:
            if len(idx) == 0:
                raise ValueError(f"part {part} of a validation set of {n} is empty")
            parts = []
            for z, noise in self._seeded_chunks(n, seed, self.render_batch or n, part):
                w = self.embed(z.to(device))
                styles = Styles(w, w, torch.full([len(w)], NO_MIXING, device=w.device))
                parts.append(self.render(styles, [m.to(device) for m in noise], self.eval_synthesis))
            self._fixed[key] = _cat_triples(parts)
        return self._fixed[key].to(device)

    @torch.no_grad()
    def image_sum(
        self, n: int, seed: int, device: torch.device | str, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, int]:
        """``(sum, count)``: the float64 sum ``[1, 3, R, R]`` of the renders of process ``rank``'s share
        (:func:`shard`) of the ``n`` seeded samples of :meth:`mean_image`, and how many they are; the
        processes' sums and counts add up to the whole."""
        total, count = None, 0
        for z, noise in self._seeded_chunks(n, seed, self.render_batch or min(n, 64), shard(n, rank, world)):
            w = self.embed(z.to(device))
            ws = Styles(w, w, torch.full([len(w)], NO_MIXING, device=w.device)).mix(self.teacher_resolutions)
            s = self.render_finest(ws, [m.to(device) for m in noise], self.eval_synthesis).double().sum(0, keepdim=True)
            total, count = (s if total is None else total + s), count + len(w)
        if total is None:
            r = self.student_cfg.img_resolution
            total = torch.zeros(1, 3, r, r, dtype=torch.float64, device=device)
        return total, count

    def mean_image(self, n: int, seed: int, device: torch.device | str) -> torch.Tensor:
        """The teacher's mean image ``[1, 3, R, R]`` at the student's resolution over ``n`` seeded
        samples drawn like :meth:`fixed_set` (no mixing, this source's truncation), accumulated in
        float64 chunk by chunk. Predicting it for every w is the trivial baseline a student's PSNR is
        compared with; use a seed other than the validation set's."""
        total, count = self.image_sum(n, seed, device)
        return (total / count).float()


def _cat_triples(parts: list[Triple]) -> Triple:
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: [torch.cat(ts) for ts in zip(*(getattr(p, name) for p in parts))]  # noqa: E731
    return Triple(torch.cat([p.ws for p in parts]), cat("noise"), cat("images"), cat("wavelets"))


__all__ = [
    "NO_MIXING",
    "Triple",
    "Styles",
    "TripleSource",
    "teacher_ws_resolution",
    "student_ws_resolution",
    "ws_resolutions",
    "as_index",
    "check_cpu_generator",
    "image_pyramid",
    "sample_generator",
    "shard",
    "STREAM_TRIPLE",
    "STREAM_POOL",
    "STREAM_AUG_STUDENT",
    "STREAM_AUG_REAL",
    "STREAM_AUG_FAKE",
    "STREAM_CALIBRATION",
]
