"""Our CUDA kernels (teacher/ops/cuda): they compile, and they compute what the reference computes.

Four layers, so that most of it runs on a CPU-only machine:

- NVRTC: every kernel source compiles to PTX (two architectures); kernel parameters
  match their ctypes mirrors; the disk cache; the error messages. Needs only libnvrtc (skipped,
  with the reason, without it).
- Host emulation: the same ``.cu`` files compiled with g++ against a tiny emulation of the CUDA
  features they use (thread / block indices, dynamic shared memory, ``__syncthreads`` as a
  barrier between cooperative fibers), launched through the real Python wrappers and autograd
  Functions on CPU tensors. This checks the kernels' index math, tiling and gradients against the
  reference without a GPU. Needs g++.
- A stand-in libcuda (compiled with the emulation) behind the real build / load / launch code:
  NVRTC CUBIN, disk cache, ctypes driver calls, context handling, error messages.
- GPU (``-m gpu``): the real thing against ``impl="ref"`` on a CUDA device.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from teacher import fs, ops
from teacher.ops import cuda
from teacher.ops.cuda import _bias_act, _driver, _nvrtc, _runtime, _upfirdn2d
from teacher.ops.cuda._errors import CudaBuildError, CudaDriverError

ENTRIES = {file_name: entries for file_name, entries in _runtime.KERNELS.values()}
ACTS = sorted(_bias_act.ACT_IDS)


@pytest.fixture(scope="session")
def nvrtc() -> _nvrtc.Nvrtc:
    try:
        return _nvrtc.load()
    except CudaBuildError as err:
        pytest.skip(f"libnvrtc not available: {err}")


# ----------------------------------------------------------------------------------------------
# NVRTC: compilation, cache, errors (CPU only)


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_every_kernel_compiles_to_ptx(nvrtc, arch):
    ptx = cuda.compile_ptx(arch)
    assert set(ptx) == set(ENTRIES)
    for file_name, entries in ENTRIES.items():
        text = ptx[file_name]
        assert f".target sm_{arch.split('_')[1]}" in text
        found = set(re.findall(r"\.entry\s+(\w+)", text))
        assert found == set(entries), f"{file_name}: {found} != {entries}"


# Parameters of each entry point: the Python wrappers pass pointers, then one ctypes Structure.
PARAM_STRUCTS = {
    "upfirdn2d": (_upfirdn2d.Upfirdn2dParams, 3),
    "bias_act_fwd": (_bias_act.BiasActParams, 3),
    "bias_act_grad": (_bias_act.BiasActParams, 4),
}


def param_layout(name: str) -> tuple[type[ctypes.Structure], int]:
    return next(v for k, v in PARAM_STRUCTS.items() if name.startswith(k))


def test_kernel_parameters_match_the_ctypes_side(nvrtc):
    """Same number of parameters, and each kernel's struct has the size of its ctypes mirror."""
    for _file_name, text in cuda.compile_ptx("compute_80").items():
        for name, params in re.findall(r"\.entry\s+(\w+)\(([^)]*)\)", text):
            struct, pointers = param_layout(name)
            decls = [d.strip() for d in params.split(",")]
            assert len(decls) == pointers + 1, name
            assert all(d.startswith(".param .u64") for d in decls[:pointers]), name
            size = int(re.search(r"\[(\d+)\]$", decls[-1]).group(1))
            assert ".align 8" in decls[-1] and size == ctypes.sizeof(struct), (name, decls[-1])


def test_compile_error_carries_the_log(nvrtc):
    with pytest.raises(CudaBuildError, match=r"(?s)broken\.cu.*compiler log.*undefined"):
        nvrtc.compile("__global__ void k() { undefined_thing(); }", "broken.cu", "compute_80")


def test_missing_nvrtc_names_the_fix(monkeypatch):
    monkeypatch.setattr(_nvrtc, "candidate_paths", lambda: ["/nonexistent/libnvrtc.so.12"])
    with pytest.raises(CudaBuildError, match="pip install nvidia-cuda-nvrtc-cu12"):
        _nvrtc.load()


def test_select_arch():
    supported = [75, 80, 86, 89, 90]
    assert _runtime.select_arch((9, 0), supported) == "sm_90"
    assert _runtime.select_arch((8, 6), supported) == "sm_86"
    assert _runtime.select_arch((12, 0), supported) == "compute_90"  # GPU newer than NVRTC: PTX + driver JIT
    assert _runtime.select_arch((8, 7), supported) == "compute_86"
    assert _runtime.select_arch((9, 0), []) == "sm_90"  # unknown list: try the real arch
    with pytest.raises(CudaBuildError):
        _runtime.select_arch((7, 0), supported)


def test_disk_cache_is_keyed_and_reused(nvrtc, tmp_path, monkeypatch):
    monkeypatch.setenv(fs.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_runtime._state, "nvrtc", nvrtc)
    first = _runtime.compile_cached("bias_act.cu", "compute_80")
    files = list((tmp_path / "kernels").iterdir())
    assert [f.suffix for f in files] == [".ptx"] and files[0].read_bytes() == first

    def no_compiler(*args):
        raise AssertionError("compiled again despite the cache")

    monkeypatch.setattr(nvrtc, "compile", no_compiler)
    assert _runtime.compile_cached("bias_act.cu", "compute_80") == first
    key = _runtime.cache_key(_runtime.kernel_source("bias_act.cu"), nvrtc.version, "compute_80")
    assert key != _runtime.cache_key(_runtime.kernel_source("bias_act.cu"), nvrtc.version, "compute_90")
    assert key != _runtime.cache_key(_runtime.kernel_source("bias_act.cu") + " ", nvrtc.version, "compute_80")


def test_import_is_cheap():
    code = (
        "import sys, teacher.ops.cuda\n"
        "assert 'teacher.ops.cuda._nvrtc' not in sys.modules and 'teacher.ops.cuda._driver' not in sys.modules\n"
        "maps = open('/proc/self/maps').read() if sys.platform == 'linux' else ''\n"
        "assert 'libnvrtc' not in maps and 'libcuda' not in maps\n"
    )
    env = {**os.environ, "MOBILESTYLEGAN_CACHE": "/nonexistent/should-not-be-touched"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_build_without_gpu_says_why():
    with pytest.raises(CudaBuildError, match="CUDA"):
        cuda.build("upfirdn2d")
    with pytest.raises(ValueError):
        cuda.build("conv2d")


def test_status_reports_nvrtc(nvrtc):
    st = cuda.status()
    assert st["nvrtc"]["version"] == nvrtc.version_str and "cache_dir" in st


# ----------------------------------------------------------------------------------------------
# Host emulation of the kernels (CPU, g++)

EMULATOR = r"""
// Emulates the CUDA features the kernels use, to run them on the host in tests.
// Each CUDA thread of a block is a ucontext fiber; __syncthreads() switches back to the scheduler,
// which resumes the fibers once all of them reached the barrier. Blocks run one after another.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>
#include <ucontext.h>

#define MSG_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
struct EmuDim3 { unsigned x, y, z; };
static EmuDim3 threadIdx, blockIdx, blockDim, gridDim;
static unsigned char* msg_smem;

namespace emu {
enum { RUNNABLE, AT_BARRIER, DONE };
static std::vector<ucontext_t> fibers;
static std::vector<std::vector<char>> stacks;
static std::vector<int> state;
static ucontext_t scheduler;
static int current;
static std::function<void()> body;
static void entry() { body(); state[current] = DONE; }

template <class... A, std::size_t... I>
static void invoke(void (*k)(A...), void** p, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}

template <class... A>
static int launch(void (*k)(A...), void** p, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                  unsigned bz, unsigned smem) {
    body = [=] { invoke(k, p, std::index_sequence_for<A...>{}); };
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    const int n = bx * by * bz;
    fibers.resize(n);
    stacks.resize(n);
    state.resize(n);
    std::vector<unsigned char> shared(smem + 16, 0xFF);  // NaN-filled: reads of unstaged data show up
    msg_smem = shared.data();
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {
        blockIdx = {x, y, z};
        for (int t = 0; t < n; ++t) {
            stacks[t].resize(1 << 16);
            getcontext(&fibers[t]);
            fibers[t].uc_stack.ss_sp = stacks[t].data();
            fibers[t].uc_stack.ss_size = stacks[t].size();
            fibers[t].uc_link = &scheduler;
            makecontext(&fibers[t], entry, 0);
            state[t] = RUNNABLE;
        }
        for (;;) {
            for (int t = 0; t < n; ++t) {
                if (state[t] != RUNNABLE) continue;
                current = t;
                threadIdx = {unsigned(t % bx), unsigned(t / bx % by), unsigned(t / (bx * by))};
                swapcontext(&scheduler, &fibers[t]);
            }
            int done = 0, waiting = 0;
            for (int t = 0; t < n; ++t) { done += state[t] == DONE; waiting += state[t] == AT_BARRIER; }
            if (done == n) break;
            if (done > 0) return 1;  // some threads exited while others wait at __syncthreads
            for (int t = 0; t < n; ++t) state[t] = RUNNABLE;
        }
    }
    return 0;
}
}  // namespace emu

static void __syncthreads() {
    emu::state[emu::current] = emu::AT_BARRIER;
    swapcontext(&emu::fibers[emu::current], &emu::scheduler);
}

#include "upfirdn2d.cu"
#include "bias_act.cu"

// A stand-in for libcuda with the entry points teacher/ops/cuda/_driver.py uses; launches run the
// emulated kernels. It rejects what a real driver would: loads and launches without the primary
// context current, over-sized launches, unknown functions, images that are neither CUBIN nor PTX.
#include <map>
#include <string>
#include <cstdio>
namespace fake {
using Launch = int (*)(void**, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned);
static std::map<std::string, Launch>& registry() { static std::map<std::string, Launch> m; return m; }
struct Registrar { Registrar(const char* name, Launch fn) { registry()[name] = fn; } };
static int primary;  // its address is the primary context handle
static void* current = nullptr;
static long long last_stream = -1;
static int launches = 0;
}  // namespace fake

extern "C" {
int cuInit(unsigned) { return 0; }
int cuDriverGetVersion(int* v) { *v = 12090; return 0; }
int cuDeviceGet(int* dev, int ordinal) { if (ordinal != 0) return 101; *dev = 0; return 0; }
int cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &fake::primary; return 0; }
int cuCtxGetCurrent(void** ctx) { *ctx = fake::current; return 0; }
int cuCtxSetCurrent(void* ctx) { fake::current = ctx; return 0; }
int cuModuleLoadDataEx(void** module, const char* image, unsigned n, int* options, void** values) {
    if (fake::current != &fake::primary) return 201;
    if (std::memcmp(image, "\x7f" "ELF", 4) != 0 && std::strstr(image, ".entry") == nullptr) {
        char* log = nullptr; size_t size = 0;
        for (unsigned i = 0; i < n; ++i) {
            if (options[i] == 5) log = static_cast<char*>(values[i]);
            if (options[i] == 6) size = reinterpret_cast<size_t>(values[i]);
        }
        if (log && size) std::snprintf(log, size, "fake JIT: not a CUBIN or PTX image");
        return 218;
    }
    *module = &fake::registry();
    return 0;
}
int cuModuleGetFunction(void** fn, void*, const char* name) {
    auto it = fake::registry().find(name);
    if (it == fake::registry().end()) return 500;
    *fn = reinterpret_cast<void*>(it->second);
    return 0;
}
int cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned smem, void* stream, void** params, void** extra) {
    if (fake::current != &fake::primary) return 201;
    if (smem > 48 * 1024 || bx * by * bz > 1024 || gy > 65535 || gz > 65535 || extra) return 1;
    fake::last_stream = reinterpret_cast<long long>(stream);
    ++fake::launches;
    return reinterpret_cast<fake::Launch>(fn)(params, gx, gy, gz, bx, by, bz, smem) == 0 ? 0 : 719;
}
int cuGetErrorName(int e, const char** s) {
    *s = e == 1 ? "CUDA_ERROR_INVALID_VALUE" : e == 201 ? "CUDA_ERROR_INVALID_CONTEXT"
       : e == 218 ? "CUDA_ERROR_INVALID_PTX" : e == 500 ? "CUDA_ERROR_NOT_FOUND"
       : e == 719 ? "CUDA_ERROR_LAUNCH_FAILED" : "CUDA_ERROR_UNKNOWN";
    return 0;
}
int cuGetErrorString(int e, const char** s) { *s = "described by the fake driver"; return 0; }
long long fake_last_stream() { return fake::last_stream; }
int fake_launches() { return fake::launches; }
void fake_reset_context() { fake::current = nullptr; }
}

#define EMU_EXPORT(name)                                                                                \
    extern "C" int emu_##name(void** p, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, \
                              unsigned bz, unsigned smem) {                                             \
        return emu::launch(name, p, gx, gy, gz, bx, by, bz, smem);                                      \
    }                                                                                                   \
    static fake::Registrar register_##name(#name, emu_##name);
"""


class _EmulatedKernel:
    def __init__(self, lib: ctypes.CDLL, name: str):
        self.name, self.fn = name, getattr(lib, f"emu_{name}")
        self.fn.argtypes = [ctypes.POINTER(ctypes.c_void_p)] + [ctypes.c_uint] * 7
        self.fn.restype = ctypes.c_int

    def launch(self, grid, block, args, shared_mem=0, stream=0):
        assert shared_mem <= 48 * 1024 and block[0] * block[1] * block[2] <= 1024 and grid[2] <= 65535
        struct, pointers = param_layout(self.name)
        assert len(args) == pointers + 1 and isinstance(args[-1], struct), self.name
        assert all(isinstance(a, ctypes.c_void_p) for a in args[:pointers]), self.name
        params = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
        assert self.fn(params, *grid, *block, shared_mem) == 0, f"{self.name}: divergent __syncthreads"


@pytest.fixture(scope="session")
def emulator_lib(tmp_path_factory) -> ctypes.CDLL:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not found: the host emulation of the kernels needs a C++ compiler")
    d = tmp_path_factory.mktemp("cuda_emulator")
    exports = "".join(f"EMU_EXPORT({name})\n" for entries in ENTRIES.values() for name in entries)
    (d / "emu.cpp").write_text(EMULATOR + exports)
    kernels = Path(_runtime.__file__).parent / "kernels"
    cmd = [
        compiler,
        "-std=c++17",
        "-O1",
        "-shared",
        "-fPIC",
        "-I",
        str(kernels),
        "-o",
        str(d / "emu.so"),
        str(d / "emu.cpp"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(d / "emu.so"))


@pytest.fixture(params=["emu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request, monkeypatch) -> str:
    """Where the CUDA path runs: the host emulator on CPU tensors, or a real GPU."""
    if request.param == "gpu":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the reference convs in full fp32
        return "cuda"
    lib = request.getfixturevalue("emulator_lib")
    monkeypatch.setattr(_runtime, "get_kernel", lambda op, name, dev: _EmulatedKernel(lib, name))
    monkeypatch.setattr(_runtime, "current_stream", lambda dev: 0)
    return "cpu"


def cuda_upfirdn2d(x, f, up, down, pad, flip, gain):
    """The CUDA path: through the public op on a GPU, straight to the kernel wrapper under emulation."""
    if x.is_cuda:
        return ops.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl="cuda")
    return cuda.upfirdn2d(x, f, up, down, pad, flip, gain)


def cuda_bias_act(x, b, dim, act, alpha, gain, clamp):
    if x.is_cuda:
        return ops.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="cuda")
    spec = ops.ACTIVATIONS[act]
    alpha = spec.default_alpha if alpha is None else alpha
    gain = spec.default_gain if gain is None else gain
    return cuda.bias_act(x, b, dim % x.ndim, act, alpha, gain, clamp)


def grads_to_second_order(fn, inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Output, first gradients (random cotangent) and the gradients of a random projection of those."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)  # noqa: E731
    y = fn(*inputs)
    first = torch.autograd.grad(y, inputs, rand(y), create_graph=True)
    loss = sum((gi * rand(gi)).sum() for gi in first)
    second = torch.autograd.grad(loss, inputs, allow_unused=True) if loss.requires_grad else [None] * len(inputs)
    return [y, *first, *(s if s is not None else torch.zeros_like(i) for s, i in zip(second, inputs))]


def assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> None:
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape, f"item {i}: {u.shape} != {v.shape}"
        torch.testing.assert_close(u, v, rtol=tol, atol=tol, msg=lambda m, i=i: f"item {i}: {m}")


UPFIRDN_CASES = [  # (x shape, filter shape, up, down, padding)
    ([2, 3, 7, 5], [4, 4], (1, 1), (1, 1), (1, 2, 2, 1)),  # blur
    ([1, 2, 6, 9], [4, 4], (2, 2), (1, 1), (2, 1, 2, 1)),  # upsample2d
    ([1, 2, 9, 8], [4, 4], (1, 1), (2, 2), (1, 1, 1, 1)),  # downsample2d
    ([1, 2, 5, 7], [3, 5], (4, 2), (1, 4), (-1, 2, 3, -2)),  # anisotropic, negative (crop) padding
    ([2, 1, 11, 13], [8], (2, 1), (4, 2), (3, 0, -2, 4)),  # separable 1-D filter
    ([1, 1, 4, 4], [1, 1], (1, 1), (1, 1), (0, 0, 0, 0)),  # identity
]


@pytest.mark.parametrize("shape,fshape,up,down,pad", UPFIRDN_CASES)
@pytest.mark.parametrize("flip,gain", [(False, 1.0), (True, 2.5)])
def test_upfirdn2d_matches_reference(device, shape, fshape, up, down, pad, flip, gain):
    dtype = torch.float64 if device == "cpu" else torch.float32
    x = torch.randn(shape, dtype=dtype, device=device, requires_grad=True)
    f = torch.randn(fshape, dtype=torch.float32, device=device)
    args = (f, up, down, pad, flip, gain)
    # sin(): makes the first gradient depend on x, so the second order goes through backward twice.
    ours = grads_to_second_order(lambda t: cuda_upfirdn2d(t, *args).sin(), [x])
    ref = grads_to_second_order(lambda t: ops.upfirdn2d(t, *args, impl="ref").sin(), [x])
    assert_all_close(ours, ref, 1e-10 if dtype == torch.float64 else 2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("up,down", list(itertools.product([1, 2, 4], repeat=2)))
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_upfirdn2d_factor_sweep(device, up, down, kind):
    dtype = torch.float64 if device == "cpu" else torch.float32
    x = torch.randn([2, 3, 11, 13], dtype=dtype, device=device)
    f = torch.randn([8] if kind == "1d" else [4, 3], device=device)
    for pad in [(0, 0, 0, 0), (2, 1, 0, 3), (-1, 2, 3, -2)]:
        ours = cuda_upfirdn2d(x, f, (up, up), (down, down), pad, False, 1.5)
        ref = ops.upfirdn2d(x, f, up, down, pad, False, 1.5, impl="ref")
        assert_all_close([ours], [ref], 1e-10 if dtype == torch.float64 else 2e-5)


def test_upfirdn2d_tiles_planes_and_dtypes(device, monkeypatch):
    """Several tiles per plane, several planes per block, shrunken tiles for a big filter, fp16 / bf16."""
    monkeypatch.setattr(_upfirdn2d, "_MAX_GRID_Z", 2)  # blocks loop over planes
    x = torch.randn([2, 3, 50, 80], dtype=torch.float64, device=device)
    for f, up, down, pad in [
        (torch.randn([4, 4]), (2, 2), (1, 1), (2, 1, 2, 1)),
        (torch.randn([40, 30]), (1, 1), (1, 1), (15, 14, 20, 19)),
        (torch.randn([3, 3]), (1, 1), (2, 2), (-3, 1, 0, 2)),
    ]:
        f = f.to(device)
        ours = cuda_upfirdn2d(x, f, up, down, pad, False, 1.0)
        ref = ops.upfirdn2d(x, f, up, down, pad, impl="ref")
        assert_all_close([ours], [ref], 1e-10)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x[:, :, :20, :20].to(dtype)
        ours = cuda_upfirdn2d(xh, f, (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0)
        ref = ops.upfirdn2d(xh.double(), f, 1, 2, 1, impl="ref").to(dtype)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, ref, rtol=2e-2, atol=2e-2)


def test_upfirdn2d_gradcheck(device):
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, device=device, requires_grad=True)
    for f, up, down, pad in [
        (torch.randn([4, 4]), (2, 2), (1, 1), (2, 1, 2, 1)),
        (torch.randn([3]), (1, 2), (2, 1), (1, -1, 0, 2)),
    ]:
        f = f.to(device)
        fn = lambda t, f=f, up=up, down=down, pad=pad: cuda_upfirdn2d(t, f, up, down, pad, False, 1.5)  # noqa: E731
        fast = device == "cpu"  # the emulator is slow; the comparisons above cover the gradients too
        assert torch.autograd.gradcheck(fn, [x], fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, [x], fast_mode=fast)


BIAS_ACT_CASES = [  # (act, alpha, gain, clamp)
    *((act, None, None, None) for act in ACTS),
    ("lrelu", None, None, 0.3),  # the discriminator's conv layers
    ("linear", None, None, 0.5),
    ("relu", None, 0.7, 0.5),
    ("lrelu", 0.1, -1.5, None),  # negative gain: gradients from x, not y
    ("tanh", None, 2.0, 0.4),
    ("swish", None, None, 0.6),
]


@pytest.mark.parametrize("act,alpha,gain,clamp", BIAS_ACT_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_act_matches_reference(device, act, alpha, gain, clamp, with_bias):
    dtype = torch.float64 if device == "cpu" else torch.float32
    x = torch.randn([3, 5, 4, 2], dtype=dtype, device=device, requires_grad=True)
    b = torch.randn([5], dtype=dtype, device=device, requires_grad=True) if with_bias else None
    inputs = [x, b] if with_bias else [x]
    args = dict(dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp)
    ours = grads_to_second_order(lambda t, *bb: cuda_bias_act(t, bb[0] if bb else None, **args).sin(), inputs)
    ref = grads_to_second_order(lambda t, *bb: ops.bias_act(t, bb[0] if bb else None, **args, impl="ref").sin(), inputs)
    assert_all_close(ours, ref, 1e-10 if dtype == torch.float64 else 1e-5)


def test_bias_act_dims_loops_and_dtypes(device, monkeypatch):
    monkeypatch.setattr(_bias_act, "_MAX_BLOCKS", 3)  # grid-stride loop
    for dim, shape in [(0, [6, 7]), (-1, [4, 3, 9]), (2, [2, 3, 5, 4]), (0, [11])]:
        x = torch.randn(shape, dtype=torch.float64, device=device)
        b = torch.randn([shape[dim]], dtype=torch.float64, device=device)
        for act in ("lrelu", "softplus"):
            ours = cuda_bias_act(x, b, dim, act, None, None, 1.0)
            ref = ops.bias_act(x, b, dim=dim, act=act, clamp=1.0, impl="ref")
            assert_all_close([ours], [ref], 1e-12)
    monkeypatch.setattr(_bias_act, "_I32_LIMIT", 0)  # 64-bit index kernels
    x32, b32 = x.float(), b.float()
    assert_all_close(
        [cuda_bias_act(x32, b32, 0, "selu", None, None, None)],
        [ops.bias_act(x32, b32, dim=0, act="selu", impl="ref")],
        1e-6,
    )
    for dtype in (torch.float16, torch.bfloat16):
        ours = cuda_bias_act(x.to(dtype), b.to(dtype), 0, "lrelu", None, None, 0.5)
        ref = ops.bias_act(x.to(dtype).double(), b.to(dtype).double(), dim=0, act="lrelu", clamp=0.5, impl="ref")
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, ref.to(dtype), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("act,clamp", [("lrelu", 0.4), ("linear", 0.4), ("tanh", None), ("swish", None), ("elu", 0.9)])
def test_bias_act_gradcheck(device, act, clamp):
    # Values kept away from the kinks (0 and +-clamp), where finite differences are meaningless.
    x = torch.linspace(-1.3, 1.1, 24, dtype=torch.float64, device=device).reshape(2, 3, 4)
    x = (x + 0.01 * torch.sign(x)).requires_grad_()
    b = torch.tensor([0.03, -0.02, 0.01], dtype=torch.float64, device=device, requires_grad=True)
    fn = lambda t, bb: cuda_bias_act(t, bb, 1, act, None, None, clamp)  # noqa: E731
    assert torch.autograd.gradcheck(fn, [x, b])
    assert torch.autograd.gradgradcheck(fn, [x, b])


def test_third_order_raises_clearly(device):
    x = torch.randn([4, 3], dtype=torch.float64, device=device, requires_grad=True)
    (g,) = torch.autograd.grad(cuda_bias_act(x, None, 1, "tanh", None, None, None).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third order"):
        torch.autograd.grad(gg.sum(), x)


# ----------------------------------------------------------------------------------------------
# The real build / load / launch path (NVRTC CUBIN, disk cache, ctypes driver calls) against the
# stand-in libcuda above: checks the ctypes marshalling and context handling without a GPU.


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kernel_cache")


@pytest.fixture
def fake_driver(emulator_lib, nvrtc, kernel_cache, monkeypatch) -> ctypes.CDLL:
    monkeypatch.setattr(_driver, "LIBRARY_NAMES", (emulator_lib._name,))
    monkeypatch.setattr(_runtime, "_state", _runtime._State())  # nothing built yet
    monkeypatch.setattr(_runtime, "_prepare_device", lambda device: (9, 0))  # "an H100"
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(_runtime, "current_stream", lambda device: 0x5678)
    monkeypatch.setenv(fs.CACHE_ENV, str(kernel_cache))
    real_get_kernel, cuda0 = _runtime.get_kernel, torch.device("cuda", 0)  # CPU tensors stand in for cuda:0 ones
    monkeypatch.setattr(_runtime, "get_kernel", lambda op, name, dev: real_get_kernel(op, name, cuda0))
    emulator_lib.fake_reset_context()  # like a fresh thread: no context current
    emulator_lib.fake_last_stream.restype = ctypes.c_longlong
    return emulator_lib


def test_driver_path_end_to_end(fake_driver, kernel_cache):
    launches = fake_driver.fake_launches()
    x = torch.randn([2, 3, 9, 8], dtype=torch.float64, requires_grad=True)
    f = torch.randn([4, 4])
    args = (f, (2, 2), (1, 1), (2, 1, 2, 1), False, 2.0)
    ours = grads_to_second_order(lambda t: cuda.upfirdn2d(t, *args).sin(), [x])
    ref = grads_to_second_order(lambda t: ops.upfirdn2d(t, *args, impl="ref").sin(), [x])
    assert_all_close(ours, ref, 1e-10)
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    ours = grads_to_second_order(lambda t, bb: cuda.bias_act(t, bb, 1, "swish", 0.0, 1.4, 0.8), [x, b])
    ref = grads_to_second_order(lambda t, bb: ops.bias_act(t, bb, act="swish", gain=1.4, clamp=0.8, impl="ref"), [x, b])
    assert_all_close(ours, ref, 1e-10)
    assert fake_driver.fake_launches() > launches and fake_driver.fake_last_stream() == 0x5678
    built = cuda.status()["built"]
    assert set(built) == {"upfirdn2d cuda:0", "bias_act cuda:0"} and all("sm_90" in v for v in built.values())
    cached = sorted((kernel_cache / "kernels").iterdir())
    assert [p.suffix for p in cached] == [".cubin", ".cubin"]  # NVRTC's nvrtcGetCUBIN path, for "sm_90"
    assert all(p.read_bytes().startswith(b"\x7fELF") for p in cached)


def test_driver_errors_name_the_call(fake_driver, monkeypatch):
    driver = _driver.Driver()
    with pytest.raises(CudaDriverError, match="cuModuleLoadDataEx.*CUDA_ERROR_INVALID_PTX.*fake JIT: not a CUBIN"):
        driver.load_module(b"garbage", 0)
    module = driver.load_module(b"\x7fELF", 0)
    with pytest.raises(CudaDriverError, match=r"cuModuleGetFunction\(nope\).*CUDA_ERROR_NOT_FOUND"):
        driver.get_function(module, "nope")
    fn = driver.get_function(module, "bias_act_fwd_f32_i32")
    with pytest.raises(CudaDriverError, match="cuLaunchKernel.*CUDA_ERROR_INVALID_VALUE"):
        driver.launch(fn, 0, (1, 1, 1), (2048, 1, 1), [], 0, 0)
    monkeypatch.setattr(_runtime, "compile_cached", lambda file_name, arch: b"garbage")
    args = (torch.randn([1, 1, 4, 4]), torch.ones([2, 2]), (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0)
    with pytest.raises(CudaBuildError, match=r"loading upfirdn2d\.cu \(sm_90\) on cuda:0 failed.*INVALID_PTX"):
        cuda.upfirdn2d(*args)
    with pytest.raises(CudaBuildError, match="not retried"):  # the dispatcher asks on every call: stay cheap
        cuda.upfirdn2d(*args)


@pytest.mark.gpu
def test_gpu_build_is_cached_and_dispatched(tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda.build("upfirdn2d")
    cuda.build("bias_act")
    built = cuda.status()["built"]
    assert any(k.startswith("upfirdn2d") for k in built) and any(k.startswith("bias_act") for k in built)
    x = torch.randn([1, 4, 16, 16], device="cuda")
    y = ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1], device="cuda"), impl="cuda")
    assert y.shape == (1, 4, 32, 32)
    assert ops.status()["upfirdn2d"]["active"] == "cuda"
    # Another stream and the autograd engine's worker thread.
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xr = torch.randn([2, 8, 33, 33], device="cuda", requires_grad=True)
        yr = ops.bias_act(xr, act="lrelu", impl="cuda")
        yr.square().sum().backward()
    torch.cuda.synchronize()
    (ref,) = torch.autograd.grad(ops.bias_act(xr, act="lrelu", impl="ref").square().sum(), xr)
    torch.testing.assert_close(xr.grad, ref)


# ----------------------------------------------------------------------------------------------
# The self-test guard (teacher/ops/selftest.py): run on the emulated kernels, and on broken ones


@pytest.fixture
def emulated(emulator_lib, monkeypatch, tmp_path):
    """The CUDA path on CPU tensors through the host emulation, a fresh verdict memo, a build that
    'succeeds' and a kernel cache folder of its own."""
    from teacher.ops import _impl, selftest

    monkeypatch.setattr(_runtime, "get_kernel", lambda op, name, dev: _EmulatedKernel(emulator_lib, name))
    monkeypatch.setattr(_runtime, "current_stream", lambda dev: 0)
    monkeypatch.setattr(cuda, "build", lambda op: None)
    monkeypatch.setattr(cuda, "selftest_file", lambda op, dev, dtype: tmp_path / f"{op}.selftest-{dtype}.json")
    monkeypatch.setattr(selftest, "_verdicts", {})
    monkeypatch.setattr(_impl, "_warned", set())
    monkeypatch.setattr(_impl, "_last_choice", {})
    return tmp_path


@pytest.mark.parametrize("op", ["upfirdn2d", "bias_act"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_selftest_passes_on_the_kernels(emulated, op, dtype):
    from teacher.ops import selftest

    v = selftest.run(op, dtype, "cpu")
    cases = selftest.UPFIRDN2D_CASES if op == "upfirdn2d" else selftest.BIAS_ACT_CASES
    assert v.passed and v.cases == len(cases) and 0 <= v.max_err <= v.tolerance, v.summary()


def _scaled_grad(scale: float):
    class ScaledGrad(torch.autograd.Function):  # identity forward, wrong backward
        @staticmethod
        def forward(ctx, y):
            return y.view_as(y)

        @staticmethod
        def backward(ctx, g):
            return g * scale

    return ScaledGrad.apply


def test_selftest_catches_broken_kernels(emulated):
    """Each part of the comparison is live: a forward error in one case only, a first-order gradient
    error with a correct forward, a second-order error with correct forward and first-order gradients."""
    from teacher.ops import selftest

    def wrong_when_downsampling(x, f, up, down, pad, flip, gain):
        y = cuda.upfirdn2d(x, f, up, down, pad, flip, gain)
        return y * (1 + 1e-3) if down == (2, 2) else y

    v = selftest.run("upfirdn2d", "float32", "cpu", cuda_fn=wrong_when_downsampling)
    assert not v.passed and v.worst.startswith("case 2 ") and v.max_err > v.tolerance  # only case 2 is wrong

    bad_grad = _scaled_grad(1.001)
    v = selftest.run("upfirdn2d", "float32", "cpu", cuda_fn=lambda x, *a: bad_grad(cuda.upfirdn2d(x, *a)))
    assert not v.passed and "d/dx" in v.worst and "d2" not in v.worst

    def wrong_curvature(x, b, *args):  # + 0.01 (x - x0)^2: the same value and slope at x0, another curvature
        return cuda.bias_act(x, b, *args) + 0.01 * (x - x.detach()).square()

    v = selftest.run("bias_act", "float64", "cpu", cuda_fn=wrong_curvature)
    assert not v.passed and v.worst.endswith("d2/dx"), v.summary()
    nan = selftest.run("bias_act", "float32", "cpu", cuda_fn=lambda *a: cuda.bias_act(*a) * float("nan"))
    assert not nan.passed and nan.max_err == float("inf")


def test_auto_falls_back_once_and_cuda_raises_on_a_failed_selftest(emulated, monkeypatch):
    from teacher.ops import _impl, selftest

    broken = lambda x, f, up, down, pad, flip, gain: cuda.upfirdn2d(x, f, up, down, pad, flip, gain) + 1e-2  # noqa: E731
    monkeypatch.setattr(selftest, "_default_cuda", lambda op: broken if op == "upfirdn2d" else cuda.bias_act)
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match=r"upfirdn2d: the CUDA kernel failed its self-test.*max \|diff\|"):
        assert _impl.choose_cuda("upfirdn2d", "auto", torch.float16, cpu) == "ref"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the next calls are silent
        assert _impl.choose_cuda("upfirdn2d", "auto", torch.float32, cpu) == "ref"
    with pytest.raises(RuntimeError, match="upfirdn2d: the CUDA kernel failed its self-test.*impl='ref'"):
        _impl.choose_cuda("upfirdn2d", "cuda", torch.float32, cpu)
    assert _impl.choose_cuda("bias_act", "cuda", torch.float32, cpu) == "cuda"  # the other op is fine
    st = ops.status()
    assert st["upfirdn2d"]["active"] == "ref" and "self-test failed" in st["upfirdn2d"]["reason"]
    assert [s.split()[0] for s in st["upfirdn2d"]["selftest"].values()] == ["FAILED"]
    assert st["bias_act"]["active"] == "cuda" and list(st["bias_act"]["selftest"]) == ["float32 cpu"]
    assert "passed" in st["bias_act"]["selftest"]["float32 cpu"]


def test_selftest_verdict_is_kept_next_to_the_kernel(emulated, monkeypatch):
    from teacher.ops import selftest

    cache = cuda.selftest_file("bias_act", torch.device("cpu"), "float32")
    first = selftest.verdict("bias_act", "float32", torch.device("cpu"), cache_file=cache)
    assert first.passed and not first.cached and json.loads(cache.read_text())["passed"] is True
    monkeypatch.setattr(selftest, "_verdicts", {})  # a new process ...
    monkeypatch.setattr(selftest, "run", lambda *a, **k: pytest.fail("tested again despite the cached verdict"))
    again = selftest.verdict("bias_act", "float32", torch.device("cpu"), cache_file=cache)
    assert again.cached and again.passed and again.max_err == first.max_err
    cache.write_text("{not json")  # a damaged file is ignored: the kernel is tested again
    assert selftest._read(cache, "bias_act", "float32") is None


@pytest.mark.gpu
def test_selftest_on_the_gpu_passes_quickly():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from teacher.ops import selftest

    for op in ("upfirdn2d", "bias_act"):
        cuda.build(op)
        for dtype in ("float32", "float64"):
            v = selftest.run(op, dtype, "cuda")
            assert v.passed, v.summary()
            assert v.seconds < 1.0, v.summary()  # the budget: well under a second per op and precision
    x = torch.randn([1, 4, 16, 16], device="cuda")
    ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1], device="cuda"))  # auto: builds, self-tests, uses CUDA
    st = ops.status()["upfirdn2d"]
    assert st["active"] == "cuda" and any("passed" in s for s in st["selftest"].values()), st
