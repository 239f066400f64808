"""Standalone runtime for ``mobilestylegan-export`` directories: numpy + OpenVINO, ONNX Runtime or the LiteRT
interpreter (``.tflite``), no torch (ExecuTorch ``.pte`` programs run through :mod:`export.runtime_pte`, which needs
torch as ExecuTorch itself does). One :class:`Graph` class per backend; the backend follows from the graph file's type,
so the runtime needs to know engines and file types, not export formats.

An edge user can ship this file with :mod:`export.manifest` (both import only the standard library
and numpy; the inference engine is imported lazily), and :mod:`export.runtime_faces` (numpy and Pillow) for
``--align``::

    from export.runtime import load_runtime
    rt = load_runtime("exported/", threads=2)
    faces = rt.generate([0, 1, 2], truncation_psi=0.7)    # uint8 [3, R, R, 3]
    w = rt.mapping(z)                                       # [N, w_dim]
    img = rt.synthesis(w)                                   # float32 [N, 3, R, R], about [-1, 1]

    python -m export.runtime exported/ --seeds 0-3 --out faces/
    python -m export.runtime exported/ --encode face.png --out latents/    # an export with an encoder graph

Seeds give the same latents as the toolkit (``mobilestylegan.student.sampling.seeded_z``, i.e. ``torch.randn``
with a generator seeded per image): :func:`seeded_z` reproduces PyTorch's CPU normal sampler
(MT19937 + its 16-wide Box-Muller) in numpy, to float rounding (~2e-7).

OpenVINO runs each graph at the precision the manifest recommends (``f32`` for fp32 exports; OpenVINO's
CPU default on bf16-capable machines would otherwise be bf16); ``precision_hint`` overrides it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.manifest import BATCH_AXIS, ManifestError, graph_path, read_manifest

BACKENDS = ("openvino", "onnxruntime", "executorch", "litert")
INSTALL = {
    "openvino": "pip install openvino==2026.4.1",
    "onnxruntime": "pip install onnxruntime==1.31.1",
    "executorch": 'pip install -e ".[executorch]"   (executorch==1.5.1)',
    "litert": "pip install ai-edge-litert==2.3.0",
}


class RuntimeMissingError(ImportError):
    """The inference engine an export needs is not installed."""


def seeded_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """``[N, z_dim]`` float32: row i equals ``torch.randn(z_dim, generator=torch.Generator().manual_seed(seeds[i]))``.

    PyTorch's CPU sampler for float tensors of 16 or more elements: 24-bit uniforms from MT19937, then
    Box-Muller on blocks of 16 (cos for the first 8, sin for the last 8), the tail block redrawn.
    """
    if z_dim < 16:
        raise ValueError(f"seeded latents are reproduced for z_dim >= 16 only (got {z_dim}); pass z explicitly")
    rows = []
    for s in seeds:
        s = int(s)
        if not 0 <= s < 2**32:
            raise ValueError(f"seeds must be in 0..2**32-1, got {s}")
        bg = np.random.MT19937(0)
        bg._legacy_seeding(s)  # the reference MT19937 init_genrand, as std::mt19937 and torch use
        u = _uniform24(bg, z_dim)
        out = np.empty(z_dim, np.float32)
        for i in range(0, z_dim - 15, 16):
            out[i : i + 16] = _box_muller16(u[i : i + 16])
        if z_dim % 16:
            out[z_dim - 16 :] = _box_muller16(_uniform24(bg, 16))
        rows.append(out)
    return np.stack(rows) if rows else np.zeros((0, z_dim), np.float32)


def _uniform24(bg: np.random.MT19937, n: int) -> np.ndarray:
    raw = bg.random_raw(n).astype(np.uint32)
    return (raw & np.uint32(0xFFFFFF)).astype(np.float32) * np.float32(2.0**-24)


def _box_muller16(u: np.ndarray) -> np.ndarray:
    radius = np.sqrt(np.float32(-2) * np.log(np.float32(1) - u[:8]))
    theta = np.float32(2 * np.pi) * u[8:]
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)]).astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 (clipped), as the toolkit's ``to_uint8``."""
    x = (np.clip(img.astype(np.float32), -1, 1) + 1) * np.float32(127.5)
    return np.round(x).astype(np.uint8).transpose(0, 2, 3, 1)


class Graph:
    """One compiled graph of one backend: ``run(arrays in input order) -> first output`` (float32).

    Subclasses open the file types in :attr:`suffixes`; :data:`GRAPHS` maps each backend name to its class.
    """

    backend: str = ""
    suffixes: tuple[str, ...] = ()

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def inference_precision(self) -> str | None:
        """The precision the engine computes in, where it reports one (None: as stored)."""
        return None

    @staticmethod
    def _import(module: str, backend: str) -> Any:
        try:
            return __import__(module, fromlist=["_"])
        except ImportError as err:
            raise RuntimeMissingError(
                f"{backend} is not installed ({err}); install it with `{INSTALL[backend]}`"
            ) from None

    @staticmethod
    def _cpu_only(backend: str, device: str, precision: str | None) -> None:
        if device.upper() != "CPU":
            raise ValueError(f"the {backend} backend here runs on CPU only, not {device!r}")
        if precision not in (None, "f32"):
            raise ValueError(f"{backend} takes no precision hint (got {precision!r}); it runs the file as stored")


class OpenVINOGraph(Graph):
    """OpenVINO on an IR (``.xml`` + ``.bin``) or an ONNX file, or on an ``openvino.Model``; any OpenVINO device."""

    backend, suffixes = "openvino", (".xml", ".onnx")

    def __init__(
        self,
        path: Path | Any,
        threads: int | None = None,
        device: str = "CPU",
        precision: str | None = None,
        perf_count: bool = False,
    ) -> None:
        ov = self._import("openvino", self.backend)
        config: dict[str, Any] = {}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if perf_count:
            config["PERF_COUNT"] = True
        core = ov.Core()
        model = core.read_model(str(path)) if isinstance(path, (str, Path)) else path
        self._compiled = core.compile_model(model, device, config)
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(0)

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        feeds = {i: np.ascontiguousarray(a, dtype=np.float32) for i, a in enumerate(arrays)}
        return np.array(self._request.infer(feeds)[self._output], dtype=np.float32, copy=True)

    def inference_precision(self) -> str | None:
        return self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def profiling_info(self) -> list[Any]:
        """OpenVINO's per-layer counters of the last run (with ``perf_count``)."""
        return list(self._request.profiling_info)


class OnnxRuntimeGraph(Graph):
    """ONNX Runtime's CPU provider on an ``.onnx`` file."""

    backend, suffixes = "onnxruntime", (".onnx",)

    def __init__(
        self, path: Path, threads: int | None = None, device: str = "CPU", precision: str | None = None
    ) -> None:
        self._cpu_only(self.backend, device, precision)
        ort = self._import("onnxruntime", self.backend)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()]

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        feeds = {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in zip(self._names, arrays)}
        return self._session.run(None, feeds)[0]


class LiteRTGraph(Graph):
    """The LiteRT interpreter (its default XNNPACK delegate) on a one-input ``.tflite`` flatbuffer."""

    backend, suffixes = "litert", (".tflite",)

    def __init__(
        self, path: Path, threads: int | None = None, device: str = "CPU", precision: str | None = None
    ) -> None:
        self._cpu_only(self.backend, device, precision)
        interpreter = self._import("ai_edge_litert.interpreter", self.backend)
        it = interpreter.Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
        ((key, io),) = it.get_signature_list().items()
        self._runner, self._input, self._output = it.get_signature_runner(key), io["inputs"][0], io["outputs"][0]

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self._runner(**{self._input: np.ascontiguousarray(arrays[0], np.float32)})[self._output])


class ExecuTorchGraph(Graph):
    """ExecuTorch's runtime (XNNPACK) on a ``.pte`` program; it works on torch tensors (:mod:`export.runtime_pte`)."""

    backend, suffixes = "executorch", (".pte",)

    def __init__(
        self, path: Path, threads: int | None = None, device: str = "CPU", precision: str | None = None
    ) -> None:
        self._cpu_only(self.backend, device, precision)
        try:
            from export.runtime_pte import PteProgram
        except ImportError as err:
            raise RuntimeMissingError(
                f"executorch is not installed ({err}); install it with `{INSTALL[self.backend]}`"
            ) from None
        self._program = PteProgram(path, threads)

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self._program.run(arrays)


GRAPHS: dict[str, type[Graph]] = {g.backend: g for g in (OpenVINOGraph, OnnxRuntimeGraph, ExecuTorchGraph, LiteRTGraph)}
# The backend that runs a file type by default (the file's own engine; ONNX files also run in OpenVINO).
DEFAULT_BACKEND = {".xml": "openvino", ".onnx": "onnxruntime", ".pte": "executorch", ".tflite": "litert"}


def open_graph(
    path: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    device: str = "CPU",
    precision: str | None = None,
) -> Graph:
    """One graph file in ``backend`` (None: the file type's own, :data:`DEFAULT_BACKEND`)."""
    path = Path(path)
    cls = GRAPHS[resolve_backend(path, backend)]
    if path.suffix not in cls.suffixes:
        raise ValueError(
            f"{cls.backend} runs {', '.join(cls.suffixes)} files, not {path.name}: "
            f"use backend={DEFAULT_BACKEND.get(path.suffix)!r}"
        )
    return cls(path, threads, device, precision)


def resolve_backend(path: Path, backend: str | None = None) -> str:
    """``backend``, checked, or the one that runs ``path``'s file type; a Core ML package is refused."""
    if path.name == "Manifest.json" and path.parent.suffix == ".mlpackage":
        raise ValueError(
            "a Core ML export runs in Core ML on Apple devices; check it with "
            "`mobilestylegan-export --check DIR` on macOS"
        )
    backend = backend or DEFAULT_BACKEND.get(path.suffix)
    if backend not in GRAPHS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {backend!r}"
            if backend
            else f"no backend here runs {path.suffix} files ({path.name})"
        )
    return backend


class Runtime:
    """Runs an export directory. Build it with :func:`load_runtime`.

    Attributes:
        manifest: The directory's manifest.
        graphs: ``{"mapping": Graph, "synthesis": Graph[, "generator": Graph][, "encoder": Graph]}``.
        batch: The graphs' fixed batch, or None (dynamic). Calls with other batch sizes are split and padded.
    """

    def __init__(
        self,
        directory: Path,
        manifest: dict[str, Any],
        backend: str,
        threads: int | None,
        device: str,
        precision_hint: str | None,
    ) -> None:
        self.directory, self.manifest, self.backend = directory, manifest, backend
        model = manifest["model"]
        self.z_dim, self.w_dim, self.num_ws = model["z_dim"], model["w_dim"], model["num_ws"]
        self.img_resolution = model["img_resolution"]
        self.batch = (
            None if manifest["batch"] == BATCH_AXIS or manifest["batch"] == "dynamic" else int(manifest["batch"])
        )
        self.w_input, self.noise_mode = manifest["w_input"], manifest["noise"]["mode"]
        trunc = manifest["truncation"]
        self.baked_psi = trunc.get("psi")
        self.w_avg = np.asarray(trunc["w_avg"], np.float32) if trunc.get("w_avg") is not None else None
        self.graphs: dict[str, Graph] = {}
        for name, g in manifest["graphs"].items():
            hint = precision_hint
            if hint is None and backend == "openvino":
                hint = g.get("inference_precision", "f32")
            self.graphs[name] = open_graph(graph_path(directory, manifest, name), backend, threads, device, hint)
        self._noise_const: list[np.ndarray] | None = None

    # ---- graphs -------------------------------------------------------------------------------------------
    def mapping(self, z: np.ndarray, truncation_psi: float | None = None) -> np.ndarray:
        """z ``[N, z_dim]`` -> w ``[N, w_dim]`` (the baked psi, if any, already applied)."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        w = self.run_graph("mapping", [z])
        return self.truncate(w, truncation_psi)

    def truncate(self, w: np.ndarray, truncation_psi: float | None) -> np.ndarray:
        """``w_avg + psi * (w - w_avg)``; refuses a second psi on top of one baked into the mapping graph."""
        if truncation_psi is None or truncation_psi == 1:
            return w
        if self.baked_psi is not None:
            raise ValueError(
                f"this export bakes truncation psi={self.baked_psi} into its mapping graph; "
                "re-export without --truncation-psi to choose psi at run time"
            )
        if self.w_avg is None:
            raise ValueError("this export stores no w_avg, so it cannot truncate")
        return (self.w_avg + np.float32(truncation_psi) * (w - self.w_avg)).astype(np.float32)

    def synthesis(self, w_or_ws: np.ndarray, *noise: np.ndarray) -> np.ndarray:
        """w ``[N, w_dim]`` or ws ``[N, num_ws, w_dim]`` (+ noise maps ``[N or 1, 1, r, r]`` when the export
        takes noise as inputs) -> image ``[N, 3, R, R]`` float32, about [-1, 1] (not clamped)."""
        x = np.asarray(w_or_ws, np.float32)
        if self.w_input == "wplus":
            if x.ndim == 2 and x.shape[1] == self.w_dim:
                x = np.repeat(x[:, None], self.num_ws, axis=1)
            if x.ndim != 3 or x.shape[1:] != (self.num_ws, self.w_dim):
                raise ValueError(
                    f"ws must be [N, {self.num_ws}, {self.w_dim}] or [N, {self.w_dim}], got {list(x.shape)}"
                )
        elif x.ndim != 2 or x.shape[1] != self.w_dim:
            hint = " (this export takes one w per sample; export with --w-input wplus for W+)" if x.ndim == 3 else ""
            raise ValueError(f"w must be [N, {self.w_dim}], got {list(x.shape)}{hint}")
        shapes = self.manifest["noise"].get("shapes") or []
        if self.noise_mode == "input":
            if not noise:
                noise = tuple(self.const_noise())
            if len(noise) != len(shapes):
                raise ValueError(f"this export takes {len(shapes)} noise maps, got {len(noise)}")
            n = x.shape[0]
            noise = tuple(np.broadcast_to(np.asarray(m, np.float32), (n, *s[1:])) for m, s in zip(noise, shapes))
        elif noise:
            raise ValueError(f"this export bakes its noise ({self.noise_mode}); it takes no noise inputs")
        return self.run_graph("synthesis", [x, *noise])

    def generator(self, z: np.ndarray) -> np.ndarray:
        """The end-to-end graph (exported with ``--end-to-end``): z -> image."""
        if "generator" not in self.graphs:
            raise ValueError("this export has no end-to-end graph (export with --end-to-end)")
        return self.run_graph("generator", [np.asarray(z, np.float32)])

    def const_noise(self) -> list[np.ndarray]:
        """The student's constant noise maps ``[1, 1, r, r]`` (exports with noise inputs ship them)."""
        if self._noise_const is None:
            f = self.manifest["noise"].get("const_file")
            if not f:
                raise ValueError("this export ships no constant noise maps")
            with np.load(self.directory / f) as data:
                self._noise_const = [data[n] for n in self.manifest["noise"]["inputs"]]
        return self._noise_const

    # ---- convenience --------------------------------------------------------------------------------------
    def z(self, seeds: Sequence[int]) -> np.ndarray:
        """The toolkit's seeded latents (see :func:`seeded_z`)."""
        return seeded_z(seeds, self.z_dim)

    def render(self, seeds: Sequence[int], truncation_psi: float | None = None, noise: str = "const") -> np.ndarray:
        """Float images ``[N, 3, R, R]`` for seeds (``noise``: ``const`` or ``random`` (seeded), for exports
        with noise inputs)."""
        w = self.mapping(self.z(seeds), truncation_psi)
        maps: list[np.ndarray] = []
        if self.noise_mode == "input":
            if noise == "random":
                shapes = self.manifest["noise"]["shapes"]
                rngs = [np.random.default_rng(int(s)) for s in seeds]
                maps = [np.stack([r.standard_normal(s[1:], np.float32) for r in rngs]) for s in shapes]
            elif noise != "const":
                raise ValueError(f"noise must be 'const' or 'random', got {noise!r}")
        elif noise != "const":
            raise ValueError(f"this export bakes its noise ({self.noise_mode}); noise={noise!r} needs noise inputs")
        return self.synthesis(w, *maps)

    def generate(self, seeds: Sequence[int], truncation_psi: float | None = None, noise: str = "const") -> np.ndarray:
        """uint8 images ``[N, R, R, 3]`` for seeds."""
        return to_uint8(self.render(seeds, truncation_psi, noise))

    # ---- the encoder ----------------------------------------------------------------------------------------
    @property
    def encoder(self) -> dict[str, Any] | None:
        """The manifest's encoder entry when the export carries an encoder graph, else None."""
        e = self.manifest.get("encoder") or {}
        return e if e.get("included") and "encoder" in self.graphs else None

    def _need_encoder(self) -> dict[str, Any]:
        e = self.encoder
        if e is None:
            why = (self.manifest.get("encoder") or {}).get("reason")
            raise ValueError(
                "this export has no encoder"
                + (f" ({why})" if why else "")
                + ": export with --encoder FILE (a file from `python train.py experiment=encoder_ffhq1024`)"
            )
        return e

    def encoder_input(self, rgb: np.ndarray) -> np.ndarray:
        """A square uint8 RGB face ``[H, W, 3]`` (FFHQ-aligned, or centre-cropped) -> the encoder's input
        ``[1, 3, S, S]`` float32, as the manifest's ``encoder.preprocess`` says: Lanczos (PIL) to the student's
        resolution, to [-1, 1], then the mean of each block down to S."""
        e = self._need_encoder()
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] != rgb.shape[1] or rgb.dtype != np.uint8:
            raise ValueError(f"the encoder takes a square uint8 RGB image [H, H, 3], got {rgb.dtype} {list(rgb.shape)}")
        r, size = self.img_resolution, int(e["input_size"])
        if rgb.shape[0] != r:
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((r, r), Image.LANCZOS))
        x = rgb.astype(np.float32) / np.float32(127.5) - np.float32(1)
        k = r // size
        x = x.reshape(size, k, size, k, 3).mean(axis=(1, 3), dtype=np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def encode(self, images: np.ndarray) -> np.ndarray:
        """The encoder graph: faces ``[N, 3, S, S]`` (see :meth:`encoder_input`) -> W+ ``[N, num_ws, w_dim]``."""
        e = self._need_encoder()
        x = np.asarray(images, np.float32)
        s = int(e["input_size"])
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"the encoder takes faces [N, 3, {s}, {s}], got {list(x.shape)}")
        return self.run_graph("encoder", [x])

    def face_models(self, threads: int | None = None) -> ExportFaceModels:
        """The export's face detector and landmark models (``faces/``, written beside an encoder), for
        :mod:`export.runtime_faces`; a ValueError saying how to get them when the export has none."""
        faces = self.manifest.get("faces") or {}
        if not faces.get("included"):
            why = faces.get("reason") or "it was exported without them"
            raise ValueError(f"this export has no face models for --align ({why})")
        return ExportFaceModels(self.directory, faces, threads)

    def run_graph(self, name: str, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Graph ``name`` on inputs of any batch size (split into, and padded to, the graph's fixed batch)."""
        fn, n = self.graphs[name].run, arrays[0].shape[0]
        if self.batch is None:
            return fn(arrays)
        out = []
        for i in range(0, n, self.batch):
            chunk = [a[i : i + self.batch] for a in arrays]
            k = chunk[0].shape[0]
            if k < self.batch:  # pad to the compiled batch with copies of the first row
                chunk = [np.concatenate([c, np.repeat(c[:1], self.batch - k, axis=0)]) for c in chunk]
            out.append(fn(chunk)[:k])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


class ExportFaceModels:
    """An export's converted face models (``faces/*.onnx``, one output each: the model's outputs concatenated along
    their last axis, as the manifest's ``faces.outputs`` widths say) in ONNX Runtime, else OpenVINO."""

    def __init__(self, directory: Path, entry: dict[str, Any], threads: int | None = None) -> None:
        self.directory, self.entry, self.threads = directory, entry, threads
        self._graphs: dict[str, Graph] = {}

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        if name not in self._graphs:
            path = self.directory / self.entry["files"][name]
            try:
                self._graphs[name] = open_graph(path, "onnxruntime", self.threads)
            except RuntimeMissingError:
                self._graphs[name] = open_graph(path, "openvino", self.threads, precision="f32")
        out = self._graphs[name].run([x])
        cuts = np.cumsum(self.entry["outputs"][name])[:-1]
        return np.split(out, cuts, axis=-1)


def load_runtime(
    directory: str | Path,
    threads: int | None = None,
    device: str = "CPU",
    precision_hint: str | None = None,
    backend: str | None = None,
) -> Runtime:
    """Open an export directory.

    Args:
        directory: Written by ``mobilestylegan-export`` (holds ``manifest.json``).
        threads: Inference threads (None: the engine's default).
        device: OpenVINO device (``CPU``, ``GPU``, ...); ONNX Runtime runs on CPU.
        precision_hint: OpenVINO ``INFERENCE_PRECISION_HINT`` for every graph (``f32``, ``bf16``, ``f16``);
            None uses the manifest's recommendation per graph.
        backend: ``openvino``, ``onnxruntime``, ``executorch`` or ``litert``; None picks the export's own (ONNX
            files can run in OpenVINO).
    """
    d = Path(directory)
    manifest = read_manifest(d)
    backend = resolve_backend(graph_path(d, manifest, "synthesis"), backend)
    return Runtime(d, manifest, backend, threads, device, precision_hint)


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(a, b + 1))
        elif re.fullmatch(r"-?\d+", part):
            seeds.append(int(part))
        else:
            raise ValueError(f"cannot read seeds {text!r}: use numbers and ranges like 0-7,10")
    if not seeds:
        raise ValueError("no seeds given")
    negative = [s for s in seeds if s < 0]
    if negative:
        raise ValueError(f"seeds must be >= 0, got {negative[:5]}")
    return seeds


def read_photo(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]`` (EXIF orientation applied); a missing or unreadable file is a
    :class:`ValueError` naming it. Needs Pillow."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise ValueError("reading photos needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path} is not an image Pillow can read ({err})") from None


def centre_square(rgb: np.ndarray) -> np.ndarray:
    """The largest square in the middle of an image (an odd margin leaves its extra pixel right or bottom)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top : top + s, left : left + s]


def write_latent(path: Path, ws: np.ndarray, rt: Runtime, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``NAME.npy`` (W+ ``[1, num_ws, w_dim]`` float32) and ``NAME.json`` as ``mobilestylegan-project`` writes them
    (so ``mobilestylegan-edit`` reads them and checks the generator), each written to a temporary file first."""
    import json
    import os

    npy, desc = path.with_suffix(".npy"), path.with_suffix(".json")
    arr = np.asarray(ws, np.float32).reshape(1, rt.num_ws, rt.w_dim)
    info = {
        "format": "mobilestylegan-latent",
        "generator_hash": (rt.encoder or {}).get("generator_hash"),
        "num_ws": rt.num_ws,
        "w_dim": rt.w_dim,
        "shape": list(arr.shape),
        **meta,
    }
    for target, write in (
        (npy, lambda f: np.save(f, arr)),
        (desc, lambda f: f.write(json.dumps(info, indent=1).encode() + b"\n")),
    ):
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, target)
    return npy, desc


def encode_photos(rt: Runtime, photos: Sequence[str], out: Path, align: bool = False) -> list[Path]:
    """``--encode``: each photo centre-cropped (or, with ``align``, FFHQ-aligned by the export's face models),
    encoded and rendered; ``NAME.npy`` + ``NAME.json`` (the latent), ``NAME.png`` (its face) and, with ``align``,
    ``NAME_aligned.png`` (the crop that was encoded) in ``out``. Every photo is read and aligned before anything is
    written."""
    rt._need_encoder()
    paths = [Path(p) for p in photos]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"photos with the same name would overwrite each other's files: {sorted(stems)}")
    if align:
        from export import runtime_faces

        models = rt.face_models()
        faces = []
        for p in paths:
            try:
                faces.append(runtime_faces.align(models, read_photo(p), size=rt.img_resolution).image)
            except runtime_faces.NoFaceError as err:
                raise ValueError(f"{p}: {err}") from None
    else:
        faces = [centre_square(read_photo(p)) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, face in zip(paths, faces):
        ws = rt.encode(rt.encoder_input(face))
        img = to_uint8(rt.synthesis(ws))[0]
        meta = {"image": str(path), "init": "encoder", "steps": 0, "by": "export.runtime --encode"}
        if align:
            written.append(_save(face, out / f"{path.stem}_aligned.png"))
            meta.update(aligned=True, target=str(out / f"{path.stem}_aligned.png"))
        written += [*write_latent(out / path.stem, ws, rt, meta), _save(img, out / f"{path.stem}.png")]
    return written


def _save(arr: np.ndarray, path: Path) -> Path:
    try:
        from PIL import Image
    except ImportError:
        path = path.with_suffix(".npy")
        np.save(path, arr)
        return path
    Image.fromarray(arr).save(path, format="PNG")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.runtime",
        description="Render faces from a mobilestylegan-export directory "
        "(numpy + OpenVINO or ONNX Runtime, no torch; ExecuTorch .pte exports need torch).",
        epilog="examples:\n  python -m export.runtime exported/ --seeds 0-3 --trunc 0.7 --out faces/\n"
        "  python -m export.runtime exported/ --encode photo.jpg --align --out latents/   # exports with an encoder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", help="export directory (holds manifest.json)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--seeds", default=None, help="seeds, e.g. 0-7,10 (default 0-3)")
    what.add_argument(
        "--encode",
        nargs="+",
        metavar="PHOTO",
        default=None,
        help="encode FFHQ-aligned face photos (a non-square one is centre-cropped) with the export's encoder: "
        "NAME.npy + NAME.json (the W+ latent, as mobilestylegan-project writes it) and NAME.png (its face)",
    )
    p.add_argument("--trunc", type=float, default=None, help="truncation psi (exports without a baked psi)")
    p.add_argument(
        "--align",
        action="store_true",
        help="with --encode: find the face and crop it as FFHQ did (the export's face models, faces/*.onnx)",
    )
    p.add_argument(
        "--out", default="faces", help="output folder for seedNNNN.png (.npy without Pillow) or the encoded photos"
    )
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument("--device", default="CPU", help="OpenVINO device (default CPU)")
    p.add_argument(
        "--precision-hint",
        choices=["f32", "bf16", "f16"],
        default=None,
        help="OpenVINO inference precision (default: the manifest's)",
    )
    p.add_argument("--backend", choices=BACKENDS, default=None, help="default: the export's own runtime")
    args = p.parse_args(argv)
    try:
        if args.encode:
            if args.trunc is not None:
                raise ValueError("--trunc applies to --seeds, not to --encode")
            rt = load_runtime(args.directory, args.threads, args.device, args.precision_hint, args.backend)
            for path in encode_photos(rt, args.encode, Path(args.out), args.align):
                print(path)
            return 0
        if args.align:
            raise ValueError("--align applies to --encode PHOTO...")
        seeds = parse_seeds(args.seeds or "0-3")
        rt = load_runtime(args.directory, args.threads, args.device, args.precision_hint, args.backend)
        imgs = rt.generate(seeds, args.trunc)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for s, img in zip(seeds, imgs):
            print(_save(img, out / f"seed{s:04d}.png"))
    except (ValueError, ManifestError, RuntimeMissingError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
