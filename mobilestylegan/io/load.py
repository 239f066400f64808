"""Reading students from the files users have: native checkpoints, MobileStyleGAN.pytorch Lightning
``.ckpt`` files, this toolkit's own training checkpoints, and pretrained names.

Every container is read by ``teacher.formats.load_torch_container``: what a training run pickles besides
the weights (Lightning callbacks keyed by their class, hyper-parameters as Lightning / argparse / omegaconf
objects, optimizer states) is read as inert data and never imported or executed; a pickled call is
refused. Only the weights are used; ``info["ignored"]`` names the rest and ``info["inert_classes"]`` the
classes that were stubbed.

The original training code (bes-dev/MobileStyleGAN.pytorch, ``core/distiller.py``) saves a Lightning
checkpoint whose ``state_dict`` holds ``student.*`` (the synthesis network, with the same module
names as ours), ``mapping_net.layers.{1..n}`` (the teacher's mapping MLP, rosinality ``EqualLinear``
raw weights, ``layers.0`` being the PixelNorm), ``style_mean`` ``[1, wsize, w_dim]`` (the
truncation centre), the frozen teacher ``synthesis_net.*`` and loss/evaluation networks (ignored).
Its DWT filter buffers (``*.idwt.g{0,1}_{col,row}``) and ``device_info`` are checked and dropped.
That code keeps no noise maps; the loaded student's ``noise_const`` buffers are seeded N(0, 1)
draws (``info["noise_const"]`` says so).

Later revisions of that code replaced ``style_inv`` with a tanh on the modulation; their
checkpoints are refused with a clear message rather than loaded into the wrong architecture.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import torch

import teacher
from mobilestylegan.errors import UnknownSourceError
from mobilestylegan.io.checkpoint import (
    NotAStudentError,
    is_student_dict,
    student_from_dict,
    student_from_training_checkpoint,
)
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import StudentConfig
from teacher.formats import load_torch_container
from teacher.formats.common import CheckpointError, check_state_dict
from teacher.mapping import MappingNetwork

NOISE_SEED = 0
EMBEDDED_TEACHER = "embedded:tiny64"  # the tiny teacher bundled in the package (tests, smoke runs)
_HAAR_TAP = 1 / math.sqrt(2)


def load_any_student(source: str | Path, device: str | torch.device = "cpu") -> StudentGenerator:
    """A student from a pretrained name (``ffhq-1024``), a native checkpoint or a Lightning ``.ckpt``.

    Returns an eval-mode generator with gradients off.
    """
    from mobilestylegan.io.pretrained import PRETRAINED, load_pretrained

    if str(source) in PRETRAINED:
        return load_pretrained(str(source), device=device)
    p = Path(source)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist and is not a pretrained name (known: {sorted(PRETRAINED)})")
    if p.is_dir() or not zipfile.is_zipfile(p):  # every student container is a torch zip
        raise NotAStudentError(
            f"{p} holds no student (not a torch checkpoint file; expected a native student "
            "checkpoint, e.g. from mobilestylegan-import, or a MobileStyleGAN.pytorch Lightning .ckpt)"
        )
    obj, stubbed = load_torch_container(p)
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if is_student_dict(obj):
        G = student_from_dict(obj, str(p))
    elif isinstance(state, dict) and "distill" in obj and any(k.startswith("student.synthesis.") for k in state):
        G = student_from_training_checkpoint(obj, str(p))
    elif isinstance(state, dict) and any(k.startswith("student.") for k in state):
        G = student_from_lightning(state, str(p))
        prefixes = {k.split(".")[0] for k in state} - {"student", "mapping_net", "style_mean"}
        G.info["ignored"] = sorted(set(obj) - {"state_dict"}) + [f"state_dict: {k}.*" for k in sorted(prefixes)]
        G.info["lightning_version"] = obj.get("pytorch-lightning_version")
    else:
        raise NotAStudentError(
            f"{p} holds no student (expected a native student checkpoint, e.g. from "
            "mobilestylegan-import, or a MobileStyleGAN.pytorch Lightning .ckpt)"
        )
    if stubbed:
        G.info["inert_classes"] = stubbed  # named in the file, read as inert data, never imported
    return G.eval().requires_grad_(False).to(device)


def student_from_lightning(state: dict[str, torch.Tensor], what: str) -> StudentGenerator:
    """Convert a MobileStyleGAN.pytorch Distiller ``state_dict`` into a :class:`StudentGenerator`."""
    student = {k[len("student.") :]: v for k, v in state.items() if k.startswith("student.")}
    if "layers.0.conv1.conv.weight_dw" in student and "layers.0.conv1.conv.style_inv" not in student:
        raise CheckpointError(
            f"{what}: this student comes from a later MobileStyleGAN.pytorch revision (tanh "
            "modulation, no style_inv), which this toolkit does not implement"
        )
    student = _drop_fixed_buffers(student, what)
    cfg = _student_config(student, what)
    mapping = _mapping(state, cfg.w_dim, what)
    G = StudentGenerator(cfg, mapping)
    expected = G.synthesis.state_dict()
    g = torch.Generator().manual_seed(NOISE_SEED)
    for k, v in expected.items():  # the original keeps no noise maps: seeded draws, in layer order
        if k.endswith("noise_const") and k not in student:
            student[k] = torch.randn(v.shape, generator=g)
    check_state_dict(f"student in {what}", student, {k: tuple(v.shape) for k, v in expected.items()})
    G.synthesis.load_state_dict(student, strict=True)
    G.info = {
        "source": str(what),
        "source_format": "mobilestylegan-lightning",
        "noise_const": f"N(0, 1) drawn with seed {NOISE_SEED} (the original checkpoint stores no noise)",
        "w_avg": "style_mean" if "style_mean" in state else "zeros (no style_mean in the checkpoint)",
    }
    return G


def _drop_fixed_buffers(student: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in student.items():
        if k == "device_info":
            continue
        if re.search(r"(^|\.)idwt\.g[01]_(col|row)$", k):
            taps = v.flatten().abs()
            if taps.numel() != 2 or not torch.allclose(taps, torch.full_like(taps, _HAAR_TAP), atol=1e-6):
                raise CheckpointError(f"{what}: {k} is not a Haar (db1) filter; only Haar students are supported")
            continue
        out[k] = v
    return out


def _student_config(student: dict[str, torch.Tensor], what: str) -> StudentConfig:
    try:
        channels = [student["input.input"].shape[1]]
        i = 0
        while f"layers.{i}.conv2.bias" in student:
            channels.append(student[f"layers.{i}.conv2.bias"].shape[1])
            i += 1
        w_dim = student["conv1.conv.modulation.weight"].shape[1]
        kernel = student["conv1.conv.weight"].shape[-1]
    except KeyError as err:
        raise CheckpointError(f"{what}: student is missing {err}") from err
    try:
        return StudentConfig(
            img_resolution=8 * 2**i,
            w_dim=w_dim,
            channels=tuple(channels),
            kernel_size=kernel,
            aux_heads="to_img1.conv.weight" in student,
        )
    except ValueError as err:
        raise CheckpointError(f"{what}: inconsistent student architecture ({err})") from err


def _mapping(state: dict[str, torch.Tensor], w_dim: int, what: str) -> MappingNetwork:
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"mapping_net\.layers\.(\d+)\.weight$", k))})
    if not layers:
        raise CheckpointError(f"{what}: no mapping network (mapping_net.layers.*) in the checkpoint")
    if layers != list(range(1, len(layers) + 1)):
        raise CheckpointError(f"{what}: mapping layers {layers} are not numbered 1..n")
    z_dim = state["mapping_net.layers.1.weight"].shape[1]
    m = MappingNetwork(z_dim, w_dim, len(layers), lr_mul=0.01)
    ms = {}
    for i in layers:
        ms[f"fc{i - 1}.weight"] = state[f"mapping_net.layers.{i}.weight"]
        ms[f"fc{i - 1}.bias"] = state[f"mapping_net.layers.{i}.bias"]
    style_mean = state.get("style_mean")
    ms["w_avg"] = style_mean.reshape(-1, w_dim)[0].clone() if style_mean is not None else torch.zeros(w_dim)
    check_state_dict(f"mapping network in {what}", ms, {k: tuple(v.shape) for k, v in m.state_dict().items()})
    m.load_state_dict(ms, strict=True)
    return m


def resolve_source(spec: str) -> str:
    """``embedded:tiny64`` -> the bundled tiny teacher's path; anything else unchanged."""
    if spec == EMBEDDED_TEACHER:
        return str(Path(teacher.__file__).parent / "assets" / "rosinality_tiny64.pt")
    return spec


def load_generator_any(source: str, device: str) -> torch.nn.Module:
    """A student (pretrained name, native student, Lightning ckpt) or, failing that, a teacher."""
    from mobilestylegan.io.pretrained import PRETRAINED

    source = resolve_source(source)
    if source not in PRETRAINED and not Path(source).exists():
        raise UnknownSourceError(
            f"{source} is neither a file nor a pretrained name (known: {', '.join(sorted(PRETRAINED))})"
        )
    try:
        return load_any_student(source, device=device)
    except NotAStudentError:
        pass  # a readable file without a student: perhaps a teacher
    return teacher.load_generator(source, device=device)
