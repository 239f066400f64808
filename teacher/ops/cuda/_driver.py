"""The CUDA driver API through ctypes: load compiled kernels into torch's context and launch them."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from teacher.ops.cuda._errors import CudaBuildError, CudaDriverError

# cuModuleLoadDataEx options (CUjit_option values from the driver API).
_JIT_ERROR_LOG_BUFFER = 5
_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6
_JIT_LOG_SIZE = 16384

Dim3 = tuple[int, int, int]
LIBRARY_NAMES = ("nvcuda.dll",) if os.name == "nt" else ("libcuda.so.1", "libcuda.so")


class Driver:
    """libcuda, with the few entry points the kernels need. Loads and initialises the driver."""

    def __init__(self) -> None:
        errors = []
        for name in LIBRARY_NAMES:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as err:
                errors.append(f"{name}: {err}")
        else:
            raise CudaBuildError(
                f"the CUDA driver library could not be loaded ({'; '.join(errors)}); install the NVIDIA driver "
                "(it provides libcuda.so.1) and make sure the GPU is visible to this process"
            )
        vp, vpp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        for name, args in {
            "cuInit": [ctypes.c_uint],
            "cuDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
            "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
            "cuDevicePrimaryCtxRetain": [vpp, ctypes.c_int],
            "cuCtxGetCurrent": [vpp],
            "cuCtxSetCurrent": [vp],
            "cuModuleLoadDataEx": [vpp, ctypes.c_char_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_int), vpp],
            "cuModuleGetFunction": [vpp, vp, ctypes.c_char_p],
            "cuLaunchKernel": [
                vp,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_uint,
                vp,
                vpp,
                vpp,
            ],
            "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
            "cuGetErrorString": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
        }.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        self._lib = lib
        self._primary: dict[int, ctypes.c_void_p] = {}
        try:
            self.check(lib.cuInit(0), "cuInit")
        except CudaDriverError as err:
            raise CudaBuildError(f"the CUDA driver could not be initialised: {err}") from err
        version = ctypes.c_int()
        self.check(lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
        self.version = (version.value // 1000, version.value % 1000 // 10)

    def check(self, result: int, what: str) -> None:
        """Raise :class:`CudaDriverError` naming the call and the CUresult unless ``result`` is CUDA_SUCCESS."""
        if result == 0:
            return
        name, text = ctypes.c_char_p(), ctypes.c_char_p()
        self._lib.cuGetErrorName(result, ctypes.byref(name))
        self._lib.cuGetErrorString(result, ctypes.byref(text))
        raise CudaDriverError(
            f"{what} failed: {(name.value or b'CUDA error %d' % result).decode()}"
            f" ({(text.value or b'no description').decode()})"
        )

    def ensure_context(self, device: int) -> None:
        """Make torch's context for ``device`` (the driver's primary context) current on this thread.

        Call after torch has initialised the device. torch allocates in the primary context, and
        modules loaded there can only be launched with it current; a thread that never used the
        runtime API (or that made another context current) gets it set here.
        """
        current = ctypes.c_void_p()
        self.check(self._lib.cuCtxGetCurrent(ctypes.byref(current)), "cuCtxGetCurrent")
        primary = self._primary.get(device)
        if primary is None:
            dev, ctx = ctypes.c_int(), ctypes.c_void_p()
            self.check(self._lib.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
            # Retained once and never released: torch keeps the primary context alive for the process.
            self.check(self._lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
            primary = self._primary[device] = ctx
        if current.value != primary.value:
            self.check(self._lib.cuCtxSetCurrent(primary), "cuCtxSetCurrent")

    def load_module(self, image: bytes, device: int) -> ctypes.c_void_p:
        """Load a CUBIN or PTX ``image`` into the primary context of ``device``; PTX is JIT-compiled."""
        self.ensure_context(device)
        module = ctypes.c_void_p()
        log = ctypes.create_string_buffer(_JIT_LOG_SIZE)
        options = (ctypes.c_int * 2)(_JIT_ERROR_LOG_BUFFER, _JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        values = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(_JIT_LOG_SIZE))
        data = image if image.startswith(b"\x7fELF") else image.rstrip(b"\0") + b"\0"  # PTX must end in NUL
        result = self._lib.cuModuleLoadDataEx(ctypes.byref(module), data, 2, options, values)
        if result != 0:
            try:
                self.check(result, "cuModuleLoadDataEx")
            except CudaDriverError as err:
                jit_log = log.value.decode(errors="replace").strip()
                raise CudaDriverError(f"{err}{'; JIT log: ' + jit_log if jit_log else ''}") from None
        return module

    def get_function(self, module: ctypes.c_void_p, name: str) -> ctypes.c_void_p:
        fn = ctypes.c_void_p()
        result = self._lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode())
        self.check(result, f"cuModuleGetFunction({name})")
        return fn

    def launch(
        self,
        function: ctypes.c_void_p,
        device: int,
        grid: Dim3,
        block: Dim3,
        args: Sequence[ctypes._SimpleCData | ctypes.Structure],
        shared_mem: int,
        stream: int,
        name: str = "kernel",
    ) -> None:
        """Launch ``function`` on ``stream`` (a ``cudaStream_t`` as int, 0 = legacy default stream).

        Args:
            args: One ctypes value per kernel parameter, in order (pointers as ``c_void_p``).
        """
        self.ensure_context(device)
        params = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
        result = self._lib.cuLaunchKernel(
            function, *grid, *block, shared_mem, ctypes.c_void_p(stream or None), params, None
        )
        self.check(result, f"cuLaunchKernel({name}, grid={grid}, block={block}, shared_mem={shared_mem})")
