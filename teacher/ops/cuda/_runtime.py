"""Build (compile + cache + load) the kernels for a device and hand out launchable functions.

Nothing happens at import. The first :func:`get_kernel` / :func:`build` for an op on a device
compiles its source with NVRTC for that GPU's architecture (or fetches the binary from the disk
cache), loads it into torch's CUDA context and keeps the functions for the process.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from teacher.fs import CACHE_ENV, atomic_write, cache_root
from teacher.ops.cuda._errors import CudaBuildError, CudaDriverError

if TYPE_CHECKING:  # imported lazily at run time: nothing CUDA-related at import
    from teacher.ops.cuda._driver import Dim3, Driver
    from teacher.ops.cuda._nvrtc import Nvrtc


# op -> (kernel source file, entry points it defines)
KERNELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "upfirdn2d": ("upfirdn2d.cu", ("upfirdn2d_f32", "upfirdn2d_f64")),
    "bias_act": (
        "bias_act.cu",
        tuple(f"bias_act_{kind}_{t}_{i}" for kind in ("fwd", "grad") for t in ("f32", "f64") for i in ("i32", "i64")),
    ),
}


@dataclass(frozen=True)
class Kernel:
    """One loaded ``__global__`` function on one device."""

    name: str
    device: int
    function: ctypes.c_void_p
    driver: Driver

    def launch(self, grid: Dim3, block: Dim3, args: Sequence, shared_mem: int = 0, stream: int = 0) -> None:
        """Launch on ``stream`` (a ``cudaStream_t`` as int) with ctypes ``args``, one per kernel parameter."""
        # The guard makes the device's primary context current (and restores torch's current device after).
        with torch.cuda.device(self.device):
            self.driver.launch(self.function, self.device, grid, block, args, shared_mem, stream, self.name)


class _State:
    """The process-wide, lazily filled build state (NVRTC, driver, loaded kernels)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.nvrtc: Nvrtc | None = None
        self.driver: Driver | None = None
        self.kernels: dict[tuple[str, int], dict[str, Kernel]] = {}
        self.binaries: dict[tuple[str, int], str] = {}  # (op, device) -> how it was built, for status()
        self.paths: dict[tuple[str, int], tuple[Path, tuple[int, int]]] = {}  # -> (binary, GPU capability)
        self.failures: dict[tuple[str, int], CudaBuildError] = {}  # not retried: the dispatcher asks on every call

    def get_nvrtc(self) -> Nvrtc:
        with self.lock:
            if self.nvrtc is None:
                from teacher.ops.cuda import _nvrtc

                self.nvrtc = _nvrtc.load()
            return self.nvrtc

    def get_driver(self) -> Driver:
        with self.lock:
            if self.driver is None:
                from teacher.ops.cuda import _driver

                self.driver = _driver.Driver()
            return self.driver


_state = _State()


def kernel_source(file_name: str) -> str:
    """The text of ``kernels/<file_name>`` shipped with the package."""
    return resources.files("teacher.ops.cuda").joinpath("kernels", file_name).read_text()


def cache_dir() -> Path:
    """``${MOBILESTYLEGAN_CACHE:-~/.cache/mobilestylegan}/kernels``."""
    return cache_root() / "kernels"


def select_arch(capability: tuple[int, int], supported: Sequence[int]) -> str:
    """``sm_XY`` (CUBIN) when NVRTC knows the GPU, else PTX for the newest older arch (the driver JITs it).

    Args:
        capability: ``torch.cuda.get_device_capability()``, e.g. ``(9, 0)``.
        supported: ``Nvrtc.supported_archs()``; empty means unknown (then ``sm_XY`` is tried).
    """
    sm = capability[0] * 10 + capability[1]
    if not supported or sm in supported:
        return f"sm_{sm}"
    older = [a for a in supported if a <= sm]
    if not older:
        raise CudaBuildError(f"this NVRTC supports architectures {list(supported)}, none of them <= sm_{sm}")
    return f"compute_{max(older)}"


def cache_key(source: str, nvrtc_version: tuple[int, int], arch: str) -> str:
    from teacher.ops.cuda._nvrtc import COMPILE_OPTIONS

    parts = [source, f"nvrtc {nvrtc_version}", torch.__version__, str(torch.version.cuda), arch, *COMPILE_OPTIONS]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def binary_path(file_name: str, arch: str) -> Path:
    """Where the compiled ``file_name`` for ``arch`` is cached (named by a hash of everything that built it)."""
    key = cache_key(kernel_source(file_name), _state.get_nvrtc().version, arch)
    return cache_dir() / f"{Path(file_name).stem}-{arch}-{key[:24]}.{'cubin' if arch.startswith('sm_') else 'ptx'}"


def compile_cached(file_name: str, arch: str) -> bytes:
    """CUBIN (``sm_XY``) or PTX (``compute_XY``) of a kernel file, from the disk cache or freshly compiled."""
    nvrtc = _state.get_nvrtc()
    source = kernel_source(file_name)
    path = binary_path(file_name, arch)
    if path.is_file():
        return path.read_bytes()
    image = nvrtc.compile(source, file_name, arch)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(image))  # concurrent builders never see a partial file
    except OSError as err:
        warnings.warn(
            f"could not write the kernel cache {path} ({err}); set ${CACHE_ENV} to a writable folder",
            RuntimeWarning,
            stacklevel=2,
        )
    return image


def _device_index(device: torch.device | int | None) -> int:
    if isinstance(device, int):
        return device
    if device is None or device.index is None:
        return torch.cuda.current_device()
    return device.index


def _prepare_device(device: int) -> tuple[int, int]:
    """Have torch create its (primary) context on ``device``; return the compute capability."""
    torch.empty(1, device=f"cuda:{device}")
    return torch.cuda.get_device_capability(device)


def _load(op: str, device: int) -> dict[str, Kernel]:
    """Compile (or fetch) and load ``op``'s kernels for ``device``; cached for the process."""
    kernels = _state.kernels.get((op, device))
    if kernels is not None:
        return kernels
    with _state.lock:
        kernels = _state.kernels.get((op, device))
        if kernels is not None:
            return kernels
        if (op, device) in _state.failures:
            raise CudaBuildError(f"{_state.failures[(op, device)]} (not retried in this process)")
        try:
            kernels = _build(op, device)
        except CudaBuildError as err:
            _state.failures[(op, device)] = err
            raise
        _state.kernels[(op, device)] = kernels
        return kernels


def _build(op: str, device: int) -> dict[str, Kernel]:
    """Compile for the device's architecture (or read the disk cache), load, look up every entry point."""
    file_name, entries = KERNELS[op]
    capability = _prepare_device(device)
    nvrtc = _state.get_nvrtc()
    arch = select_arch(capability, nvrtc.supported_archs())
    image = compile_cached(file_name, arch)
    driver = _state.get_driver()
    try:
        with torch.cuda.device(device):
            module = driver.load_module(image, device)
        kernels = {name: Kernel(name, device, driver.get_function(module, name), driver) for name in entries}
    except CudaDriverError as err:
        hint = ""
        if driver.version < nvrtc.version:
            hint = (
                f"; the driver (CUDA {driver.version[0]}.{driver.version[1]}) is older than NVRTC "
                f"{nvrtc.version_str}: update the NVIDIA driver, or point $MOBILESTYLEGAN_NVRTC at an NVRTC "
                "no newer than the driver"
            )
        raise CudaBuildError(f"loading {file_name} ({arch}) on cuda:{device} failed: {err}{hint}") from err
    _state.binaries[(op, device)] = f"{arch} via NVRTC {nvrtc.version_str}"
    _state.paths[(op, device)] = (binary_path(file_name, arch), capability)
    return kernels


def selftest_file(op: str, device: torch.device, dtype: str) -> Path | None:
    """Where the self-test verdict of ``op``'s kernels built for ``device`` is kept: next to the cached
    binary, named by the GPU's compute capability and the kernel precision (None before a build)."""
    built = _state.paths.get((op, _device_index(device)))
    if built is None:
        return None
    path, (major, minor) = built
    return path.with_name(f"{path.name}.sm{major}{minor}.selftest-{dtype}.json")


def get_kernel(op: str, name: str, device: torch.device) -> Kernel:
    """The loaded kernel ``name`` of ``op`` for the CUDA ``device`` (built on first use)."""
    if device.type != "cuda":
        raise ValueError(f"the CUDA {op} kernels need CUDA tensors, got one on {device}")
    return _load(op, _device_index(device))[name]


def current_stream(device: torch.device) -> int:
    """torch's current stream on ``device`` as a ``cudaStream_t`` (int)."""
    return torch.cuda.current_stream(device).cuda_stream


def build(op: str) -> None:
    """Compile (or fetch from the cache) and load ``op``'s kernels for the current CUDA device.

    Idempotent and cheap after the first call; a failure is remembered and raised again (restart the
    process after fixing the environment).

    Args:
        op: ``"upfirdn2d"`` or ``"bias_act"``.
    Raises:
        CudaBuildError: naming what is missing (NVRTC, driver, GPU) or the compiler / loader log.
    """
    if op not in KERNELS:
        raise ValueError(f"unknown op {op!r}; expected one of {sorted(KERNELS)}")
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise CudaBuildError(
            f"cannot build the {op} kernels: {why}; install a CUDA build of torch and the NVIDIA driver"
        )
    _load(op, torch.cuda.current_device())


def compile_ptx(arch: str = "compute_80") -> dict[str, str]:
    """Compile every kernel source to PTX for ``arch`` (no GPU needed); ``{file name: PTX text}``.

    Raises:
        CudaBuildError: NVRTC missing, or a compile error (with the compiler log).
    """
    if not arch.startswith("compute_"):
        raise ValueError(f"compile_ptx needs a virtual architecture such as 'compute_80', got {arch!r}")
    nvrtc = _state.get_nvrtc()
    return {f: nvrtc.compile(kernel_source(f), f, arch).decode() for f, _ in KERNELS.values()}


def status() -> dict:
    """NVRTC and driver found (or why not), the cache folder and what is built on which device."""
    out: dict = {"cache_dir": str(cache_dir())}
    try:
        nvrtc = _state.get_nvrtc()
        out["nvrtc"] = {"path": nvrtc.path, "version": nvrtc.version_str}
    except CudaBuildError as err:
        out["nvrtc"] = {"error": str(err)}
    if _state.driver is not None:
        out["driver"] = {"cuda_version": f"{_state.driver.version[0]}.{_state.driver.version[1]}"}
    out["built"] = {f"{op} cuda:{dev}": how for (op, dev), how in sorted(_state.binaries.items())}
    return out
