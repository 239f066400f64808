"""Typed (structured) Hydra configs for distillation. A typo in YAML or on the command line fails when
the config is composed, not an hour into a run. Registered with Hydra's ConfigStore as ``*_schema``
nodes that the YAML files in ``conf/`` extend; experiments are ``# @package _global_`` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """The configuration cannot work; the message names the key and the fix."""


@dataclass
class TeacherSchema:
    """Args:
    source: Pretrained name (``ffhq-1024``: the published MobileStyleGAN student), any teacher checkpoint
        (rosinality .pt, NVIDIA/TF .pkl, native, ...) or ``embedded:tiny64``.
    discriminator: Where the discriminator starts, a ``_partial_`` factory of
        :mod:`mobilestylegan.distill.discriminator` (group ``teacher/discriminator``: ``auto``, the teacher
        file's D when it has one, else a fresh one; ``random``; ``file`` with ``path``).
    """

    source: str = "ffhq-1024"
    discriminator: Any = field(
        default_factory=lambda: {"_target_": "mobilestylegan.distill.discriminator.auto", "_partial_": True}
    )


@dataclass
class StudentSchema:
    """Args:
    img_resolution: Student output resolution (<= the teacher's, power-of-two ratio).
    channels: Feature channels at 4..img_resolution/2; None = the teacher's table scaled by ``width``.
    width: Channel multiplier for the default table.
    kernel_size: Depthwise kernel size.
    trainable_demod: Learn the demodulation vectors.
    init: Start from this student (pretrained name or checkpoint), e.g. to fine-tune ffhq-1024.
    init_from_teacher: Start from the teacher's own layers, channel-pruned to this student's widths
        and cut at its resolution (MobileStyleGAN teachers only; ``mobilestylegan/distill/prune.py``).
    prune_by: How ``init_from_teacher`` chooses the kept channels: ``weights`` (how strongly the teacher's next
        layer's weights read them), ``data`` (what the teacher's next layer receives from them on ``prune_samples``
        sample latents) or ``recon`` (the channels from which least squares best rebuilds the next layer's output on
        those latents).
    prune_samples: Sample latents of ``prune_by=data`` and ``recon``.
    solve_heads: Before the first step, solve every head in closed form (least squares from its features to the
        teacher's wavelets) on this many triples (the first ones of a cache, else live ones); 0 = keep the heads as
        they start (``mobilestylegan/distill/heads.py``).
    """

    img_resolution: int = 1024
    channels: list[int] | None = None
    width: float = 1.0
    kernel_size: int = 3
    trainable_demod: bool = False
    init: str | None = None
    init_from_teacher: bool = False
    prune_by: str = "weights"
    prune_samples: int = 128
    solve_heads: int = 0


@dataclass
class DataSchema:
    """Args:
    batch_size: Triples per step and process (the global batch is this times the number of processes;
        a run's samples depend only on the global batch, not on how it is split).
    truncation_psi: Truncation of the training latents (1 = none).
    style_mixing_prob: Probability of mixing two latents at a random resolution.
    render_batch: Teacher render chunk (memory); None = the whole batch.
    val_size: Fixed validation latents (identical across runs and resumptions).
    val_seed: Seed of the validation latents and noise.
    baseline_samples: Teacher samples averaged into the mean image of the trivial baseline
        (``baseline_psnr``: that image predicted for every validation latent), drawn independently of the
        validation set. With a cache and no style mixing the pool's own mean is used (no extra renders).
    cache_size: 0 = render the teacher on the fly every step; N > 0 = pre-render N triples once and draw
        batches from them (for CPUs, where teacher renders dominate).
    cache_renderer: What fills the cache: None (the PyTorch teacher itself) or a ``_partial_`` renderer such
        as :class:`mobilestylegan.distill.render.OpenVINOSynthesis` with ``precision: f32 | bf16`` (the
        teacher's synthesis compiled with OpenVINO for the CPU, faster there than PyTorch; bf16 targets differ
        from f32 by up to ~0.02). Validation renders with the PyTorch teacher unless ``val_with_renderer``.
    val_with_renderer: Render the validation set and the baseline's samples with ``cache_renderer`` compiled in f32
        (the teacher's numbers to float rounding; on a CPU several times faster than the PyTorch teacher), with or
        without a cache.
    """

    batch_size: int = 8
    truncation_psi: float = 1.0
    style_mixing_prob: float = 0.9
    render_batch: int | None = None
    val_size: int = 16
    val_seed: int = 1234
    baseline_samples: int = 256
    cache_size: int = 0
    cache_renderer: Any = None
    val_with_renderer: bool = False


@dataclass
class LossSchema:
    """Weights and settings of the paper's losses (pixel 1.0, perceptual 1.0, GAN 0.1).

    Args:
        pixel / perceptual / gan: Loss weights (0 disables a term; gan 0 also skips the discriminator).
        pixel_l1 / pixel_l2: Weights of L1 and L2 inside the pixel loss.
        perceptual_size: VGG input size.
        vgg_weights: torchvision's ``vgg16-397923af.pth``; None = ``$MOBILESTYLEGAN_VGG16`` or the cache path.
        allow_random_vgg: Seeded random VGG weights when ``vgg_weights`` is unset and no file is at the default location
            (tests only: perceptual numbers are then meaningless).
        r1_gamma / r1_interval: Lazy R1 regularisation of the discriminator.
        augment_p: Probability of each differentiable augmentation before the discriminator.
        mbstd_group_size: Minibatch-stddev group size of the discriminator (None = its own: 4 for a fresh
            one). Groups form within each process's batch, so with several processes and a small batch per
            process this part of the discriminator sees smaller groups than a single process would.
    """

    pixel: float = 1.0
    perceptual: float = 1.0
    gan: float = 0.1
    pixel_l1: float = 1.0
    pixel_l2: float = 1.0
    perceptual_size: int = 256
    vgg_weights: str | None = None
    allow_random_vgg: bool = False
    r1_gamma: float = 10.0
    r1_interval: int = 16
    augment_p: float = 0.5
    mbstd_group_size: int | None = None


@dataclass
class AdamSchema:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class OptimSchema:
    """Args:
    student / discriminator: Optimizer partials (``_partial_: true``), Adam(5e-4, (0.9, 0.999)) by default.
    grad_clip: Clip the student's gradient norm to this (None = off; users needed it at 512 px).
    ema_beta: EMA of the student weights used for validation, samples and export (0 = no EMA).
    schedule: The student's learning-rate schedule, a ``_partial_`` of :mod:`mobilestylegan.distill.schedule`
        completed with the run's length (group ``optim/schedule``: ``constant``, ``cosine``; both with
        ``warmup_steps``, cosine with ``min_lr_ratio``).
    """

    student: AdamSchema = field(default_factory=AdamSchema)
    discriminator: AdamSchema = field(default_factory=AdamSchema)
    grad_clip: float | None = None
    ema_beta: float = 0.999
    schedule: Any = field(
        default_factory=lambda: {
            "_target_": "mobilestylegan.distill.schedule.Constant",
            "_partial_": True,
            "warmup_steps": 0,
        }
    )


@dataclass
class TrainerSchema:
    """Args:
    steps: Training iterations (each: one student step and, with a GAN loss, one discriminator step).
    val_every / checkpoint_every: In iterations.
    accelerator / devices / strategy / num_nodes / precision: Passed to ``lightning.Trainer``
        (``precision: bf16-mixed`` for bf16). ``strategy``: a Lightning strategy name, or a node with
        ``_target_`` (``trainer=ddp``: :class:`~mobilestylegan.distill.ddp.NetworkDDPStrategy`; the name
        ``ddp`` means the same, since Lightning's whole-module wrapper cannot train this module).
    seed: Global seed (model init, data, augmentation).
    threads: torch CPU threads (None = torch's default).
    resume: ``auto`` (continue from ``last.ckpt`` in the output directory if present), a checkpoint path,
        or None.
    fast_dev_run: One step of training and validation, no checkpoints (smoke test).
    max_minutes: Stop after this wall-clock time (None = no limit).
    progress_bar: Show a progress bar.
    identity: After training, measure the FaceNet identity distance of the student's validation faces to the
        teacher's where FaceNet is installed (``summary.json``'s ``identity``); never part of a loss.
    """

    steps: int = 100_000
    val_every: int = 1000
    checkpoint_every: int = 1000
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    seed: int = 0
    threads: int | None = None
    resume: str | None = "auto"
    fast_dev_run: bool = False
    max_minutes: float | None = None
    progress_bar: bool = True
    identity: bool = True


@dataclass
class EncoderAugmentSchema:
    """The photo augmentation of the encoder's training faces (:class:`~mobilestylegan.distill.encoder_augment.
    PhotoAugment`): a drawn backdrop outside the face with probability ``background``; each of colour, blur, noise
    and JPEG with probability ``p``; a small misalignment always."""

    p: float = 0.5
    rotate: float = 3.0
    scale: float = 0.04
    shift: float = 0.03
    blur: float = 1.5
    noise: float = 0.03
    jpeg_min: int = 30
    background: float = 0.0


@dataclass
class EncoderSchema:
    """Training a latent encoder (``task: encoder``; ``mobilestylegan/distill/encoder_run.py``).

    Args:
        generator: The generator to invert (pretrained name or any generator file the toolkit loads).
        input_size / channels / reduce / hidden / offset_rank: The architecture
            (:class:`~mobilestylegan.nets.encoder.EncoderConfig`).
        stats_samples: Latents behind the whitening of W, drawn like the pool's (its truncation range, no mixing).
        batch_size: Pool samples per step and process.
        pool_size / pool_chunk: Rendered training faces, and how many are rendered (and saved) at a time.
        pool_dir: Where the pool's chunks are saved and found (None: ``pool/`` in the output directory); a finished
            pool is reused by any run with the same generator and sampling.
        renderer: What renders the pool: None (the generator itself, on the training device) or a ``_partial_``
            renderer such as :class:`mobilestylegan.distill.render.OpenVINOSynthesis`; validation renders with it
            in f32.
        psi_min / psi_max / style_mixing_prob: The pool's latents (truncation uniform in the range; mixing).
        val_size / val_seed / val_psi / val_resolution: The fixed validation faces and the PSNR's resolution.
        spread_power: The loss weighs each whitened direction of W by its spread to this power (0: whitened MSE, every
            direction alike; 1: MSE in W, large-spread directions first).
        image_weight / image_resolution / image_samples / image_fit: The image loss (students only; 0: off): the
            MSE between a coarse render (the student up to its ``image_resolution``-px features, then a least-squares
            linear map to the image at twice that; ``mobilestylegan/distill/encoder_proxy.py``) of the predicted
            latent and of the true one, on the first ``image_samples`` samples of each global batch, the map fitted
            on the pool's first ``image_fit`` samples.
        save_dtype: ``float16`` or ``float32``: the weights in ``encoder.safetensors``.
        augment: The photo augmentation.
    """

    generator: str = "ffhq-1024"
    input_size: int = 128
    channels: list[int] | None = None
    reduce: int = 128
    hidden: int = 512
    offset_rank: int = 128
    stats_samples: int = 10_000
    batch_size: int = 32
    pool_size: int = 4096
    pool_chunk: int = 256
    pool_dir: str | None = None
    renderer: Any = None
    psi_min: float = 0.5
    psi_max: float = 1.0
    style_mixing_prob: float = 0.5
    val_size: int = 64
    val_seed: int = 4321
    val_psi: float = 0.7
    val_resolution: int = 256
    spread_power: float = 0.0
    image_weight: float = 0.0
    image_resolution: int = 32
    image_samples: int = 8
    image_fit: int = 256
    save_dtype: str = "float32"
    augment: EncoderAugmentSchema = field(default_factory=EncoderAugmentSchema)


@dataclass
class DistillSchema:
    # ``distill`` (a student from a teacher) or ``encoder`` (a latent encoder for a generator: ``encoder.*``; it
    # shares ``optim``, ``trainer`` and ``logger`` and ignores the other groups).
    task: str = "distill"
    encoder: EncoderSchema = field(default_factory=EncoderSchema)
    teacher: TeacherSchema = field(default_factory=TeacherSchema)
    student: StudentSchema = field(default_factory=StudentSchema)
    data: DataSchema = field(default_factory=DataSchema)
    loss: LossSchema = field(default_factory=LossSchema)
    optim: OptimSchema = field(default_factory=OptimSchema)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    # A Lightning logger built with _target_ (group ``logger``: csv, tensorboard, wandb), given ``save_dir``.
    logger: Any = None
    name: str = MISSING


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="distill_schema", node=DistillSchema)
    for group, node in [
        ("teacher", TeacherSchema),
        ("student", StudentSchema),
        ("data", DataSchema),
        ("loss", LossSchema),
        ("optim", OptimSchema),
        ("trainer", TrainerSchema),
    ]:
        cs.store(group=group, name=f"{group}_schema", node=node)
