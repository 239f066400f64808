"""Native student checkpoints: config + mapping + synthesis, readable with ``weights_only=True``.

``torch.save`` of ``{"format": "mobilestylegan-student", "version": 1, "student_config": {...},
"fused": bool, "synthesis_state": {...}, "mapping_config": {z_dim, w_dim, num_layers, lr_mul},
"mapping_state": {...}, "info": {...}}``. ``info`` holds provenance (source, w_avg origin, ...).
Written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import StudentConfig
from teacher.formats.common import CheckpointError, check_state_dict
from teacher.fs import atomic_write
from teacher.mapping import MappingNetwork

FORMAT = "mobilestylegan-student"
VERSION = 1


class NotAStudentError(CheckpointError):
    """The file is readable but holds no student (it may hold a teacher: callers can try that next)."""


def mapping_config(m: MappingNetwork) -> dict[str, Any]:
    """What rebuilds a mapping network: ``{z_dim, w_dim, num_layers, lr_mul}``."""
    return {"z_dim": m.z_dim, "w_dim": m.w_dim, "num_layers": m.num_layers, "lr_mul": m.fc0.bias_gain}


def save_student(path: str | os.PathLike, G: StudentGenerator, info: dict[str, Any] | None = None) -> Path:
    """Write ``G`` (fused or not) as a native student checkpoint."""
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "student_config": G.cfg.to_dict(),
        "fused": bool(G.synthesis.fused),
        "synthesis_state": {k: v.detach().cpu().clone() for k, v in G.synthesis.state_dict().items()},
        "mapping_config": mapping_config(G.mapping),
        "mapping_state": {k: v.detach().cpu().clone() for k, v in G.mapping.state_dict().items()},
        "info": dict(info or {}),
    }
    return atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def student_from_training_checkpoint(obj: dict, what: str) -> StudentGenerator:
    """The student of one of this toolkit's distillation checkpoints (``checkpoints/last.ckpt``, ``best.ckpt``):
    its EMA when the run kept one (what ``student.pt`` holds), else the trained student."""
    state, distill = obj["state_dict"], obj["distill"]
    if "student_config" not in distill:
        raise CheckpointError(
            f"{what}: a distillation checkpoint of an older version of this toolkit, without the "
            "student's architecture; use the run's student.pt"
        )
    which = "student_ema" if any(k.startswith("student_ema.synthesis.") for k in state) else "student"
    pick = lambda prefix: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}  # noqa: E731
    G = student_from_dict(
        {
            "format": FORMAT,
            "version": VERSION,
            "student_config": distill["student_config"],
            "fused": False,
            "synthesis_state": pick(f"{which}.synthesis."),
            "mapping_config": distill["mapping_config"],
            "mapping_state": pick(f"{which}.mapping."),
        },
        what,
    )
    G.info = {
        "source": what,
        "source_format": "mobilestylegan-toolkit-training",
        "weights": which,
        "iteration": obj.get("global_step"),
        "lightning_version": obj.get("pytorch-lightning_version"),
        "ignored": sorted(set(obj) - {"state_dict"}),
    }
    return G


def is_student_dict(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def student_from_dict(obj: dict, what: str) -> StudentGenerator:
    """Build a :class:`StudentGenerator` from a loaded native student dict (strict)."""
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"{what}: student checkpoint version {obj.get('version')!r} is not supported "
            f"(this toolkit reads version {VERSION})"
        )
    try:
        cfg = StudentConfig.from_dict(obj["student_config"])
        mc = obj["mapping_config"]
        mapping = MappingNetwork(mc["z_dim"], mc["w_dim"], mc["num_layers"], mc["lr_mul"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{what}: invalid student checkpoint ({err})") from err
    G = StudentGenerator(cfg, mapping)
    if obj.get("fused"):
        G.synthesis.fuse()
    _load_strict(mapping, obj.get("mapping_state") or {}, f"mapping network in {what}")
    _load_strict(G.synthesis, obj.get("synthesis_state") or {}, f"student synthesis network in {what}")
    G.info = dict(obj.get("info") or {})
    return G


def _load_strict(module: torch.nn.Module, state: dict, what: str) -> None:
    check_state_dict(what, state, {k: tuple(v.shape) for k, v in module.state_dict().items()})
    module.load_state_dict(state, strict=True)


def load_student(path: str | os.PathLike, device: str | torch.device = "cpu") -> StudentGenerator:
    """Load a native student checkpoint: eval mode, gradients off."""
    from teacher.formats import load_torch_file

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"student checkpoint {p} does not exist")
    obj = load_torch_file(p)
    if not is_student_dict(obj):
        fmt = obj.get("format") if isinstance(obj, dict) else None
        raise NotAStudentError(f"{p} is not a native student checkpoint (format={fmt!r})")
    G = student_from_dict(obj, str(p))
    return G.eval().requires_grad_(False).to(device)
