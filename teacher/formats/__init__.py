"""Reading every supported checkpoint format into the native layout.

``read_checkpoint(path)`` detects the format from the file's content (not its name):

====================  ==========================================================================
format                detected by
====================  ==========================================================================
native ``.pt``        torch zip whose dict has ``format == "mobilestylegan-teacher"``
native safetensors    safetensors header with our metadata
rosinality ``.pt``    torch zip with ``g_ema`` / ``g`` holding ``style.*`` and ``input.input``
MobileStyleGAN split  torch zip ``{"params", "ckpt"}`` files, or a directory holding them
MobileStyleGAN .ckpt  its Lightning training checkpoint (``state_dict``: ``mapping_net.*``, ``synthesis_net.*``)
NVIDIA ``.pkl``       pickle referencing ``torch_utils.persistence`` (read by a restricted unpickler)
TensorFlow ``.pkl``   pickle referencing ``dnnlib.tflib.network`` (restricted unpickler, no TF)
OpenVINO IR mapping   ``.xml`` IR of a mapping network (random-face's ``MappingNetwork.xml``)
====================  ==========================================================================

Torch files are read by :func:`load_torch_container`: torch reads the container and the tensor storages,
our restricted unpickler the rest (classes outside its whitelist become inert stubs, pickled calls are
refused); nothing in a file is executed.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from teacher.formats import native, rosinality
from teacher.formats.common import Checkpoint, CheckpointError

__all__ = ["Checkpoint", "CheckpointError", "read_checkpoint", "load_torch_container", "load_torch_file"]


def load_torch_file(path: str | os.PathLike) -> object:
    """``torch.load`` restricted to tensors and plain containers; see :func:`load_torch_container`."""
    return load_torch_container(path)[0]


def load_torch_container(path: str | os.PathLike) -> tuple[object, list[str]]:
    """Read a torch file without executing anything: ``(object, names of the stubbed globals)``.

    torch reads the zip container and the tensor storages; the pickle inside is read by our restricted
    unpickler (``safe_pickle.StubbingUnpickler``, handed to ``torch.load`` as its ``pickle_module``, which is
    why ``weights_only`` is off: that unpickler is the guard). Tensors, plain containers and values load
    for real; every other global the file names (training checkpoints keep Lightning callbacks keyed by
    their class, hyper-parameters in Lightning / argparse / omegaconf objects) becomes an inert stand-in
    that holds its pickled data and is never imported; a pickled call of one (a ``__reduce__``) is refused.
    """
    from teacher.formats.safe_pickle import torch_pickle_module

    module, stubbed = torch_pickle_module(str(path))
    try:
        obj = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=module, mmap=zipfile.is_zipfile(path)
        )
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:  # torch raises UnpicklingError / RuntimeError with long messages
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot be read safely as a torch file ({msg})") from err
    return obj, sorted(stubbed)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint into a :class:`Checkpoint` (native configs + state dicts)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.is_dir():
        from teacher.formats import mobilestylegan

        if mobilestylegan.sniff(str(p), b""):
            return mobilestylegan.read(str(p))
        raise CheckpointError(
            f"{p} is a directory that holds no MobileStyleGAN split teacher files; pass a checkpoint file"
        )
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise CheckpointError(f"{p} is empty")
    if zipfile.is_zipfile(p):
        return _read_torch_zip(p)
    if native.sniff_safetensors(head):
        return native.read_safetensors(str(p))
    from teacher.formats import nvidia, openvino_ir, tensorflow

    for reader in (nvidia, tensorflow, openvino_ir):
        if reader.sniff(str(p), head):
            return reader.read(str(p))
    raise CheckpointError(
        f"{p}: unrecognised checkpoint format. Supported: native (.pt/.safetensors), rosinality .pt, "
        "NVIDIA stylegan2-ada/stylegan3 .pkl, TensorFlow StyleGAN2 .pkl, MobileStyleGAN split files, "
        "OpenVINO IR mapping network (.xml)"
    )


def _read_torch_zip(p: Path) -> Checkpoint:
    obj = load_torch_file(p)
    if native.is_native_dict(obj):
        return native.from_dict(obj, str(p))
    if rosinality.is_rosinality_dict(obj):
        return rosinality.from_dict(obj, str(p))
    if isinstance(obj, dict) and {"params", "ckpt"} <= set(obj):
        from teacher.formats import mobilestylegan

        return mobilestylegan.read(str(p))
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if isinstance(state, dict) and any(str(k).startswith("synthesis_net.") for k in state):
        from teacher.formats import mobilestylegan

        return mobilestylegan.from_lightning(state, str(p))
    if isinstance(obj, dict) and "distill" in obj:
        raise CheckpointError(
            f"{p} is a distillation checkpoint of this toolkit: it holds the student (read it with "
            "mobilestylegan-generate / -export / -eval), never the teacher; pass the teacher's "
            "own file"
        )
    keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{p}: a torch file, but not a StyleGAN2 checkpoint we know (top-level keys: {keys})")
