"""Restricted unpickling for the pickle-based checkpoint formats (NVIDIA ``.pkl``, TensorFlow ``.pkl``).

A pickle is a small program: every ``GLOBAL`` / ``STACK_GLOBAL`` opcode imports a name and ``REDUCE``
calls it, so ``pickle.load`` on an untrusted file runs whatever the file asks for. Here every global
goes through :meth:`RestrictedUnpickler.find_class`, which answers from an explicit whitelist of
``(module, name) -> object`` and refuses everything else with a :class:`CheckpointError` naming the
global. Persistent ids are refused too. The whitelisted callables are either plain containers or
wrappers written here that check their arguments:

- torch tensors pickle (outside ``torch.save``) as ``torch._utils._rebuild_tensor_v2(storage, ...)``
  and parameters as ``torch._utils._rebuild_parameter(tensor, ...)``; a storage pickles as
  ``torch.storage._load_from_bytes(blob)`` where ``blob`` is a legacy ``torch.save`` stream (it
  names ``torch.FloatStorage`` & co.). The blob is read with ``torch.load(weights_only=True)``.
- numpy arrays pickle as ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` plus
  ``numpy.dtype`` and a BUILD; numpy scalars as ``numpy.core.multiarray.scalar(dtype, bytes)``
  (``numpy._core`` under numpy 2).

:func:`pickle_globals` lists the globals a stream imports without executing anything.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import pickletools
import struct
import types
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np
import torch

from teacher.formats.common import CheckpointError

try:  # numpy >= 1.26 (and 2.x) spell the private module numpy._core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

Whitelist = Mapping[tuple[str, str], Any]

# Errors the C unpickler raises on malformed or truncated input (a whitelisted callable given
# bad arguments raises TypeError / ValueError / RuntimeError).
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    struct.error,
    OverflowError,
    RuntimeError,
    UnicodeDecodeError,
    MemoryError,
    RecursionError,
)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals only from ``whitelist`` and refuses persistent ids.

    Args:
        file: Binary stream positioned at the start of the pickle.
        whitelist: ``(module, name) -> object`` returned for that global.
        what: Name of the file or format for error messages.
        hints: Optional ``(module, name) -> text`` appended when that global is refused.
    """

    def __init__(
        self, file: BinaryIO, whitelist: Whitelist, what: str, hints: Mapping[tuple[str, str], str] | None = None
    ) -> None:
        super().__init__(file)
        self._whitelist = whitelist
        self._what = what
        self._hints = hints or {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._whitelist[(module, name)]
        except KeyError:
            hint = self._hints.get((module, name), "")
            raise CheckpointError(
                f"{self._what}: refused to load the global {module}.{name}; this reader never imports or "
                f"calls anything outside its whitelist (the file may execute code when loaded with plain "
                f"pickle){hint}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(
            f"{self._what}: refused a persistent id ({type(pid).__name__}); plain pickles of this format have none"
        )


def restricted_load(
    path: str | os.PathLike, whitelist: Whitelist, what: str, hints: Mapping[tuple[str, str], str] | None = None
) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; every failure becomes a CheckpointError."""
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, whitelist, what, hints).load()
    except CheckpointError:
        raise
    except OSError as err:
        raise CheckpointError(f"{what}: cannot read the file ({err})") from err
    except _LOAD_ERRORS as err:
        raise CheckpointError(
            f"{what}: not a readable pickle, or truncated/corrupt ({type(err).__name__}: {_first_line(err)})"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------------
# torch tensors


def _load_storage_from_bytes(blob: Any) -> torch.TypedStorage | torch.UntypedStorage:
    """``torch.storage._load_from_bytes``, but with ``torch.load(weights_only=True)`` on the CPU."""
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError(f"a tensor storage must be pickled as bytes, got {type(blob).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
            storage = torch.load(io.BytesIO(bytes(blob)), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError / RuntimeError with long explanations
        raise CheckpointError(
            f"a tensor storage blob was refused by torch.load(weights_only=True): {_first_line(err)}"
        ) from err
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(f"a tensor storage blob holds a {type(storage).__name__}, not a storage")
    return storage


def _check_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or hooks):
        raise CheckpointError("refused a tensor pickled with backward hooks")


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for storages made by :func:`_load_storage_from_bytes`."""
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError(f"a tensor was pickled over a {type(storage).__name__}, not a storage")
    ints_ok = isinstance(storage_offset, int) and all(
        isinstance(seq, tuple) and all(isinstance(v, int) for v in seq) for seq in (size, stride)
    )
    if not ints_ok or len(size) != len(stride) or (metadata is not None and not isinstance(metadata, dict)):
        raise CheckpointError("a tensor was pickled with malformed offset/size/stride/metadata")
    _check_hooks(backward_hooks)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
        return torch._utils._rebuild_tensor_v2(
            storage, storage_offset, size, stride, False, OrderedDict(), metadata or None
        )


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    """``torch._utils._rebuild_parameter[_with_state]``: the plain tensor (we need no Parameters)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter was pickled over a {type(data).__name__}, not a tensor")
    _check_hooks(backward_hooks)
    return data.detach()


TORCH_TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
}

# ---------------------------------------------------------------------------------------------------
# numpy arrays and scalars


def _reconstruct_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise CheckpointError(f"refused a numpy array of subtype {subtype!r}")
    return _np_reconstruct(np.ndarray, shape, dtype)


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise CheckpointError(f"refused a numpy scalar of dtype {dtype!r}")
    return _np_scalar(dtype, data)


NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(mod, "_reconstruct"): _reconstruct_array for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _numpy_scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
}

# ---------------------------------------------------------------------------------------------------
# containers


class EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access) in NVIDIA's pickles."""

    def __setstate__(self, state: Any) -> None:  # instance __dict__ of a real EasyDict: empty
        if state is not None and not isinstance(state, dict):
            raise CheckpointError(f"malformed dnnlib.util.EasyDict state ({type(state).__name__})")


def _latin1_bytes(text: Any, encoding: Any = None) -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol-2 pickles spell a bytes object."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("refused _codecs.encode other than the latin1 spelling of bytes")
    return text.encode("latin1")


CONTAINER_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("_codecs", "encode"): _latin1_bytes,
    # protocol <= 3 pickles sets as set(list); protocol 2 spells the module __builtin__
    **{
        (mod, name): obj
        for mod in ("builtins", "__builtin__")
        for name, obj in (("set", set), ("frozenset", frozenset))
    },
}


class InertObject:
    """Base of the stand-ins for classes a checkpoint names but this toolkit never imports (a training
    run's callbacks, hyper-parameter containers, configs: Lightning, omegaconf, ...).

    Unpickling may *create* such an object (``NEWOBJ``: ``cls.__new__(cls, *args)``) and fill it (``BUILD``,
    ``SETITEMS``, ``APPENDS``): the values are kept as plain data and no code of the real class runs.
    *Calling* the class (``REDUCE``, which is how a pickled function call looks) raises
    :class:`CheckpointError`: a file that asks for a call of anything this reader does not know is refused.
    """

    stub_of = "?"  # "module.name" of the class this stands in for

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = super().__new__(cls)
        obj.__dict__.update(args=args, items={}, list=[], state=None)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise CheckpointError(
            f"refused to call {self.stub_of}(...): the file asks for a call of a global this "
            "reader never imports or calls (a pickled __reduce__); nothing was executed"
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["list"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["list"].extend(values)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<inert {self.stub_of}>"


def inert_class(name: str) -> type:
    """A fresh :class:`InertObject` subclass standing in for the class (or function) ``module.name``."""
    module, _, qual = name.rpartition(".")
    return type(
        qual or name, (InertObject,), {"__module__": module or "?", "__qualname__": qual or name, "stub_of": name}
    )


def _plain_defaultdict(default_factory: Any = None) -> dict:
    """``collections.defaultdict(factory)`` unpickled as a plain dict (the factory is never called)."""
    return {}


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor`` (how protocol 0/1 pickles an object): only for stand-ins and plain containers."""
    if isinstance(cls, type) and issubclass(cls, InertObject):
        return cls.__new__(cls)
    if cls in (dict, list, OrderedDict) and base is object:
        return cls()
    raise CheckpointError(f"refused copyreg._reconstructor of {getattr(cls, '__name__', cls)!r}; nothing was executed")


# What torch files may use for real. Plain value types may be called (that only builds a value); every
# other global becomes an inert stand-in (StubbingUnpickler).
TORCH_FILE_GLOBALS: dict[tuple[str, str], Any] = {
    **TORCH_TENSOR_GLOBALS,
    **NUMPY_GLOBALS,
    **CONTAINER_GLOBALS,
    ("argparse", "Namespace"): argparse.Namespace,
    ("collections", "defaultdict"): _plain_defaultdict,
    ("copyreg", "_reconstructor"): _reconstructor,
    **{
        (mod, t.__name__): t
        for mod in ("builtins", "__builtin__")
        for t in (dict, list, tuple, int, float, complex, str, bytes, bytearray, bool, slice, range, object)
    },
}


class StubbingUnpickler(pickle.Unpickler):
    """The unpickler for torch files: globals in ``whitelist`` resolve to their (checked) objects, every other
    one to an :class:`InertObject` class (recorded in ``stubbed``) instead of being imported. Loading can
    create and fill such objects but never call them. Persistent ids (tensor storages) are left to whoever
    sets ``persistent_load`` (``torch.load`` does; none set: refused)."""

    def __init__(self, file: BinaryIO, whitelist: Whitelist, what: str, stubbed: set[str], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._whitelist, self._what = whitelist, what
        self.stubbed = stubbed
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = self._whitelist.get((module, name))
        if found is not None:
            return found
        key = f"{module}.{name}"
        self.stubbed.add(key)
        if key not in self._stubs:
            self._stubs[key] = inert_class(key)
        return self._stubs[key]


def torch_pickle_module(what: str) -> tuple[types.ModuleType, set[str]]:
    """A stand-in for the ``pickle`` module to hand ``torch.load(pickle_module=...)``: torch reads the zip
    container and its tensor storages, and every object of the pickle goes through a
    :class:`StubbingUnpickler`. Returns the module and the set it records the stubbed globals in."""
    stubbed: set[str] = set()

    class Unpickler(StubbingUnpickler):
        def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
            super().__init__(file, TORCH_FILE_GLOBALS, what, stubbed, **kwargs)

    module = types.ModuleType("teacher_restricted_pickle")
    module.Unpickler = Unpickler
    module.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    module.UnpicklingError = pickle.UnpicklingError
    return module, stubbed


def plain(obj: Any, depth: int = 0) -> Any:
    """Plain JSON-like copy of unpickled metadata (dicts, lists, str, numbers, None); other leaves
    (tensors, stubs, arrays) become their type name."""
    if depth > 20:
        return "..."
    if isinstance(obj, dict):
        return {str(k): plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
        return obj.item()
    return f"<{type(obj).__name__}>"


# ---------------------------------------------------------------------------------------------------
# inspection without execution


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def pickle_globals(path: str | os.PathLike) -> set[str]:
    """The ``module.name`` of every GLOBAL / STACK_GLOBAL / INST / OBJ-by-name the first pickle in
    ``path`` imports, found with ``pickletools.genops`` (nothing is imported or called).

    STACK_GLOBAL takes its two strings from the stack, often through the memo; a name that is not a
    string literal is reported as ``?``.
    """
    found: set[str] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # values pushed, enough to resolve STACK_GLOBAL's two operands
    try:
        with open(path, "rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.add(f"{module}.{attr}")
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                    found.add(f"{module if isinstance(module, str) else '?'}.{attr if isinstance(attr, str) else '?'}")
                    recent.append(None)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(arg)))
                elif name in _STRING_OPS:
                    recent.append(arg if isinstance(arg, str) else None)
                elif name not in ("PROTO", "FRAME"):
                    recent.append(None)
                del recent[:-4]
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the file ({err})") from err
    except Exception as err:  # pickletools raises ValueError / UnicodeDecodeError ... on non-pickles
        raise CheckpointError(f"{path}: not a pickle stream ({type(err).__name__}: {_first_line(err)})") from err
    return found


def looks_like_pickle(head: bytes) -> bool:
    """True when ``head`` starts with a PROTO opcode of protocol 2..5 (every format we read)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def contains_marker(path: str, head: bytes, marker: bytes, limit: int = 1 << 20) -> bool:
    """Whether ``marker`` occurs in ``head`` or, failing that, in the first ``limit`` bytes of ``path``."""
    if marker in head:
        return True
    try:
        with open(path, "rb") as fh:
            return marker in fh.read(limit)
    except OSError:
        return False
