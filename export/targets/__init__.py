"""The export formats: one :class:`~export.targets.base.Target` per format, found by name.

The built-in formats register themselves below; :func:`register` adds another (a subclass of
:class:`~export.targets.base.Target`), after which ``export(..., fmt=NAME)``, ``mobilestylegan-export --format NAME``
and the benchmark's rows know it without any other change.
"""

from __future__ import annotations

from typing import Any

from export.context import ExportOptions
from export.errors import ExportError
from export.targets.base import BenchRow, Target

__all__ = [
    "BenchRow",
    "Target",
    "all_targets",
    "checkable",
    "format_names",
    "get_target",
    "offering",
    "options_for",
    "register",
    "taking",
    "unregister",
]

_TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Add a format (its name and aliases must be new); returns it."""
    taken = [n for n in (target.name, *target.aliases) if _lookup(n) is not None]
    if taken:
        raise ValueError(f"export format name(s) {taken} are registered already")
    _TARGETS[target.name] = target
    return target


def unregister(name: str) -> None:
    """Remove a format registered with :func:`register`."""
    _TARGETS.pop(name, None)


def all_targets() -> list[Target]:
    """Every registered format, in registration order."""
    return list(_TARGETS.values())


def format_names(aliases: bool = False) -> tuple[str, ...]:
    """The formats' names (and their aliases with ``aliases``)."""
    return tuple(n for t in _TARGETS.values() for n in ((t.name, *t.aliases) if aliases else (t.name,)))


def get_target(name: str) -> Target:
    """The format called ``name`` (or one of its aliases)."""
    target = _lookup(name)
    if target is None:
        raise ExportError(f"format must be one of {', '.join(format_names())}; got {name!r}")
    return target


def options_for(
    target: Target, precision: str | None = None, w_input: str | None = None, **options: Any
) -> ExportOptions:
    """The options of an export to ``target``, checked: None picks the format's default precision and synthesis
    input; anything no format takes, or this one does not offer, is refused with one :class:`ExportError`."""
    opts = ExportOptions(
        format=target.name,
        precision=precision or target.default_precision,
        w_input=w_input or target.default_w_input,
        **options,
    )
    opts.check_common()
    if opts.precision not in target.precisions:
        owners = offering(opts.precision)
        offered = " and ".join(f"{t.title} ({t.precisions[opts.precision]})" for t in owners)
        raise ExportError(
            f"{opts.precision} is offered for {offered} only: use --format {owners[0].name} "
            f"--precision {opts.precision}"
        )
    if opts.compute_units is not None and "compute_units" not in target.takes:
        titles = " / ".join(t.title for t in taking("compute_units"))
        raise ExportError(f"compute units are a {titles} choice; got {opts.compute_units!r} for --format {target.name}")
    target.check(opts)
    opts.check_values()
    return opts


def offering(precision: str) -> list[Target]:
    """The formats that offer ``precision``."""
    return [t for t in _TARGETS.values() if precision in t.precisions]


def taking(option: str) -> list[Target]:
    """The formats that take an option only some take (``opset``, ``compute_units``)."""
    return [t for t in _TARGETS.values() if option in t.takes]


def checkable() -> list[Target]:
    """The formats ``mobilestylegan-export --check DIR`` runs (their runtime is elsewhere, or more than the
    exporter's)."""
    return [t for t in _TARGETS.values() if t.checks_elsewhere]


def _lookup(name: str) -> Target | None:
    return next((t for t in _TARGETS.values() if name == t.name or name in t.aliases), None)


def _register_builtins() -> None:
    from export.targets.coreml import CoreMLTarget
    from export.targets.executorch import ExecuTorchTarget
    from export.targets.litert import LiteRTTarget
    from export.targets.onnx import OnnxTarget
    from export.targets.openvino import OpenVINOTarget
    from export.targets.web import WebTarget

    for cls in (OnnxTarget, OpenVINOTarget, ExecuTorchTarget, CoreMLTarget, LiteRTTarget, WebTarget):
        register(cls())


_register_builtins()
