"""NVRTC, CUDA's run-time compiler, through ctypes: find the library, compile a source to PTX or CUBIN.

No CUDA toolkit, C++ compiler or GPU is needed: the ``nvidia-cuda-nvrtc-cu12`` wheel (or the one a
CUDA build of torch depends on) is enough. Kernel sources must not include CUDA headers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import re
import sys
from pathlib import Path

import torch

from teacher.ops.cuda._errors import CudaBuildError

ENV_LIB = "MOBILESTYLEGAN_NVRTC"
INSTALL_HINT = (
    "install it with `pip install nvidia-cuda-nvrtc-cu12` (the project's [cuda] extra), use a CUDA build of "
    f"torch (it depends on NVRTC), or point ${ENV_LIB} at a libnvrtc shared library"
)
# Flags for every kernel; part of the cache key. Full-precision math: the kernels must match the reference.
COMPILE_OPTIONS = ("--std=c++17",)


def _lib_patterns() -> list[str]:
    if os.name == "nt":
        return ["nvrtc64_*.dll"]
    return ["libnvrtc.so*", "libnvrtc-*.so*"]


def _is_nvrtc_lib(path: str) -> bool:
    name = os.path.basename(path)
    return "builtins" not in name and ".alt." not in name


def _major(path: str) -> int | None:
    """CUDA major version from a library file name (``libnvrtc.so.12`` -> 12, ``nvrtc64_120_0.dll`` -> 12)."""
    m = re.search(r"\.so\.(\d+)", path) or re.search(r"nvrtc64_(\d\d)", path)
    return int(m.group(1)) if m else None


def candidate_paths() -> list[str]:
    """Where libnvrtc may be, most specific first; libraries matching torch's CUDA major come first."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        dirs += [Path(root) / "cuda_nvrtc" / "lib", Path(root) / "cuda_nvrtc" / "bin", Path(root) / "cu13" / "lib"]
    dirs.append(Path(torch.__file__).parent / "lib")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            dirs += [Path(os.environ[var]) / "lib64", Path(os.environ[var]) / "lib", Path(os.environ[var]) / "bin"]
    dirs.append(Path("/usr/local/cuda/lib64"))

    found: list[str] = []
    for d in dirs:
        for pattern in _lib_patterns():
            found += sorted(p for p in glob.glob(str(d / pattern)) if _is_nvrtc_lib(p))
    system = ctypes.util.find_library("nvrtc")
    if system:
        found.append(system)
    found = list(dict.fromkeys(found))  # de-duplicate, keep order
    want = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else None
    if want is not None:
        found.sort(key=lambda p: _major(p) not in (want, None))  # stable: keeps the search order otherwise
    env = os.environ.get(ENV_LIB)
    return ([env] if env else []) + found


class Nvrtc:
    """A loaded libnvrtc.

    Args:
        path: The shared library to load.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        c_int_p, c_size_p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t)
        prog_p, buf = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_char)
        for name, args in {
            "nvrtcVersion": [c_int_p, c_int_p],
            "nvrtcCreateProgram": [
                prog_p,
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_char_p),
                ctypes.POINTER(ctypes.c_char_p),
            ],
            "nvrtcCompileProgram": [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
            "nvrtcDestroyProgram": [prog_p],
            "nvrtcGetProgramLogSize": [ctypes.c_void_p, c_size_p],
            "nvrtcGetProgramLog": [ctypes.c_void_p, buf],
            "nvrtcGetPTXSize": [ctypes.c_void_p, c_size_p],
            "nvrtcGetPTX": [ctypes.c_void_p, buf],
        }.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [ctypes.c_int], ctypes.c_char_p
        # Newer entry points (CUDA >= 11.1 / 11.2); absent ones are detected when used.
        for name, args in {
            "nvrtcGetCUBINSize": [ctypes.c_void_p, c_size_p],
            "nvrtcGetCUBIN": [ctypes.c_void_p, buf],
            "nvrtcGetNumSupportedArchs": [c_int_p],
            "nvrtcGetSupportedArchs": [c_int_p],
        }.items():
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = args, ctypes.c_int
        self._lib = lib
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            msg = self._lib.nvrtcGetErrorString(result).decode(errors="replace")
            raise CudaBuildError(f"{what} failed: {msg} (NVRTC at {self.path})")

    def supported_archs(self) -> list[int]:
        """Real architectures this NVRTC can emit CUBIN for (e.g. ``[50, ..., 90, 120]``); empty if unknown."""
        if not hasattr(self._lib, "nvrtcGetSupportedArchs"):
            return []
        n = ctypes.c_int()
        self._check(self._lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * n.value)()
        self._check(self._lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        return list(archs)

    def compile(self, source: str, name: str, arch: str) -> bytes:
        """Compile ``source`` for ``arch``: ``sm_XY`` gives CUBIN, ``compute_XY`` gives PTX.

        Args:
            source: CUDA C++ source, without ``#include``s of CUDA headers.
            name: File name shown in the compiler's messages.
            arch: ``sm_XY`` or ``compute_XY``.
        Returns:
            The CUBIN image, or the PTX text (UTF-8, no trailing NUL).
        """
        cubin = arch.startswith("sm_")
        if cubin and not hasattr(self._lib, "nvrtcGetCUBIN"):
            raise CudaBuildError(f"NVRTC {self.version_str} cannot emit CUBIN; use NVRTC >= 11.1 ({INSTALL_HINT})")
        lib, prog = self._lib, ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
            "nvrtcCreateProgram",
        )
        try:
            opts = [f"--gpu-architecture={arch}", *COMPILE_OPTIONS]
            c_opts = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
            result = lib.nvrtcCompileProgram(prog, len(opts), c_opts)
            if result != 0:
                msg = lib.nvrtcGetErrorString(result).decode(errors="replace")
                raise CudaBuildError(
                    f"NVRTC {self.version_str} could not compile {name} for {arch} ({msg}); "
                    f"compiler log:\n{self._log(prog)}"
                )
            if cubin:
                get_size, get = lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN
            else:
                get_size, get = lib.nvrtcGetPTXSize, lib.nvrtcGetPTX
            size = ctypes.c_size_t()
            self._check(get_size(prog, ctypes.byref(size)), get_size.__name__)
            out = ctypes.create_string_buffer(size.value)
            self._check(get(prog, out), get.__name__)
            return out.raw if cubin else out.raw.rstrip(b"\0")
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))

    def _log(self, prog: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        if self._lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0 or size.value <= 1:
            return "(empty)"
        out = ctypes.create_string_buffer(size.value)
        self._lib.nvrtcGetProgramLog(prog, out)
        return out.value.decode(errors="replace")

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def load() -> Nvrtc:
    """Load the first usable libnvrtc of :func:`candidate_paths`; raise :class:`CudaBuildError` naming the fix."""
    tried = []
    for path in candidate_paths():
        try:
            return Nvrtc(path)
        except (OSError, AttributeError, CudaBuildError) as err:
            tried.append(f"{path}: {err}")
    where = "; ".join(tried) if tried else "no candidate found"
    raise CudaBuildError(
        f"libnvrtc (the CUDA run-time compiler) not found or not loadable ({where}); {INSTALL_HINT}"
        + (" or add its folder to PATH" if sys.platform == "win32" else "")
    )
