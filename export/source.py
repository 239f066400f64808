"""What is exported: a student from a checkpoint, a pretrained name or memory; anything else is refused with a hint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from export.errors import ExportError
from teacher.fs import sha256_file

if TYPE_CHECKING:
    from mobilestylegan.student.generator import StudentGenerator


def load_student(source: Any) -> tuple[StudentGenerator, dict[str, Any]]:
    """(StudentGenerator, provenance dict); teachers and other files are refused with a hint."""
    from mobilestylegan.student.generator import StudentGenerator

    if isinstance(source, StudentGenerator):
        return source, {"spec": "in-memory StudentGenerator", "info": jsonable(getattr(source, "info", {}))}
    if isinstance(source, torch.nn.Module):
        raise ExportError(f"export needs a StudentGenerator, got a {type(source).__name__}")
    from mobilestylegan.io.checkpoint import NotAStudentError
    from mobilestylegan.io.load import load_any_student
    from mobilestylegan.io.pretrained import PRETRAINED
    from teacher.formats.common import CheckpointError

    spec = str(source)
    try:
        G = load_any_student(spec)
    except NotAStudentError:
        refuse_teacher(Path(spec))
        raise  # not reached: _refuse_teacher always raises
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    info = {"spec": spec, "info": jsonable(getattr(G, "info", {}))}
    if spec not in PRETRAINED:
        info["sha256"] = sha256_file(spec)
    return G, info


def refuse_teacher(path: Path) -> None:
    """Raise the error that says what ``path`` holds instead of a student (a teacher: distil it first)."""
    from teacher.formats import read_checkpoint
    from teacher.formats.common import CheckpointError

    try:
        ck = read_checkpoint(path)
    except CheckpointError:
        raise ExportError(
            f"{path} holds no student (expected a native student checkpoint, a MobileStyleGAN.pytorch "
            "Lightning .ckpt or a pretrained name such as ffhq-1024)"
        ) from None
    if ck.g_config is not None:
        raise ExportError(
            f"{path} is a StyleGAN2 teacher ({ck.source_format}, {ck.g_config.img_resolution}px), not a "
            f"student; distil it first (python train.py experiment=... teacher.source={path}) and "
            "export the student checkpoint"
        ) from None
    raise ExportError(f"{path} holds no student (a {ck.source_format} file without a generator)") from None


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON holds it (anything else as its string)."""
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return str(obj)
