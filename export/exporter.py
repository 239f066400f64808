"""Export a student to ONNX or OpenVINO IR, parity-checked and quality-gated.

``export(source, fmt, out_dir, ...)`` writes::

    out_dir/
      mapping.onnx | mapping.xml + mapping.bin          z [B, z_dim] -> w [B, w_dim] (psi optionally baked)
      synthesis.onnx | synthesis.xml + synthesis.bin    w [B, w_dim] or ws [B, num_ws, w_dim] (+ noise) -> img
      generator.onnx | generator.xml + .bin             optional end to end: z -> img
      noise_const.npz                                   the student's constant maps (only with noise inputs)
      manifest.json                                     see export/manifest.py

The graphs are :mod:`mobilestylegan.student.lean`'s lean modules, exported with the TorchScript-based
``torch.onnx.export`` (opset :data:`ONNX_OPSET`). The OpenVINO IR is that ONNX graph read by OpenVINO
(``Core.read_model``) and saved with ``save_model``: ``convert_model`` would fuse each baked noise map
with the next bias into a ``[1, C, r, r]`` constant, C times the map. Everything is built in a temporary directory
next to ``out_dir`` and renamed onto it only after every check has passed, so a failed export
leaves nothing behind. Checks, in order:

1. parity of the fp32 graphs against the PyTorch student (evaluated in float64, the exact value) on
   :data:`PARITY_SEEDS`: max |diff| within ``teacher.numerics.parity_tolerance`` (2**11 float32 ulps of
   max(1, peak |output|), derived from float32 rounding there) for ONNX Runtime and OpenVINO
   (``INFERENCE_PRECISION_HINT=f32``); an ONNX export is run by both, an IR by OpenVINO.
2. size: the synthesis file(s) may weigh at most :data:`SIZE_LIMIT` x the fp32 bytes of the graph's
   parameters and baked noise;
3. quality of the precision variant: PSNR of seeded z -> mapping -> synthesis (const noise) against the fp32
   PyTorch student on :data:`QUALITY_SEEDS`, run as the standalone runtime will run it; fp16 and int8
   must reach :data:`QUALITY_GATE_DB`.

Precisions:
- ``fp32``: float32 weights, run in f32 (OpenVINO is told ``INFERENCE_PRECISION_HINT=f32``).
- ``fp16``: OpenVINO: weights compressed to fp16 (``save_model(compress_to_fp16=True)``); the synthesis
  graph runs at OpenVINO's CPU default (bf16 on CPUs with bf16, f16 on ARM, else f32: the manifest
  records what the gate measured), the mapping in f32. ONNX: float16 initializers each followed by a
  Cast to float32: half the file, ONNX Runtime folds the Casts at load and computes in float32 (its x86
  CPU provider has no fp16 convolutions; for fp16/bf16 compute use the OpenVINO format).
- ``int8``: OpenVINO only: NNCF post-training quantisation of the synthesis graph
  (:func:`export.quantize.quantize_int8`) calibrated on synthesis inputs from seeded latents
  (:data:`CALIBRATION_SEEDS`); the mapping stays fp32; run with the f32 hint for the non-quantised ops.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from export.manifest import FORMAT, MANIFEST_NAME, MANIFEST_VERSION, io_spec
from teacher.fs import atomic_write, current_umask, sha256_file
from teacher.numerics import PARITY_RULE, max_abs_diff, parity_tolerance, pooled_psnr_db

FORMATS = ("onnx", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")
W_INPUTS = ("w", "wplus")
NOISE = ("const", "input", "none")
ONNX_OPSET = 17
PARITY_SEEDS = (0, 1, 2, 3)
QUALITY_SEEDS = tuple(range(16))
QUALITY_GATE_DB = {"fp16": 40.0, "int8": 40.0}
CALIBRATION_SEEDS = tuple(range(10_000, 10_064))
SIZE_LIMIT = 1.15
NOISE_CONST_FILE = "noise_const.npz"


class ExportError(Exception):
    """An export that cannot be made or failed a check; the message is one line for the user."""


# ------------------------------------------------------------------------------------------------ public

def export(source: Any, fmt: str, out_dir: str | os.PathLike, precision: str = "fp32", w_input: str = "w",
           noise: str = "const", batch: int | None = 1, truncation_psi: float | None = None,
           end_to_end: bool = False, parity: bool = True, progress: bool = True, force: bool = False,
           resolution: int | None = None, opset: int = ONNX_OPSET) -> dict[str, Any]:
    """Export a student and return the manifest written to ``out_dir/manifest.json``.

    Args:
        source: A student checkpoint path (native ``.pt`` or MobileStyleGAN.pytorch ``.ckpt``), a pretrained
            name (``ffhq-1024``) or a :class:`~mobilestylegan.student.generator.StudentGenerator`.
        fmt: ``onnx`` or ``openvino``.
        out_dir: Directory to create (refused if it exists and is not empty, unless ``force``).
        precision: ``fp32``, ``fp16`` or ``int8`` (OpenVINO only).
        w_input: Synthesis input: ``w`` (one w, ``[B, w_dim]``) or ``wplus`` (``[B, num_ws, w_dim]``).
        noise: ``const`` (the student's maps baked in), ``input`` (one input per layer) or ``none``.
        batch: Fixed batch size, or None for a dynamic batch axis.
        truncation_psi: Bake truncation into the mapping graph (None: choose psi at run time from the
            manifest's ``w_avg``).
        end_to_end: Also write one ``generator`` graph z -> img (needs ``w_input="w"``, noise not ``input``).
        parity: Run the ORT/OpenVINO-vs-PyTorch parity check (fp32 graphs). Always on from the CLI.
        progress: Show a progress bar.
        force: Replace an existing non-empty ``out_dir``.
        resolution: Expected output resolution; an export of a student of another resolution is refused.
        opset: ONNX opset.

    Raises:
        ExportError: Bad arguments, not a student, missing runtime, unwritable directory, failed check.
    """
    _check_args(fmt, precision, w_input, noise, batch, truncation_psi, end_to_end, resolution)
    _require_engines(fmt, precision)
    out = Path(out_dir)
    created = _prepare_out(out, force)
    tmp: Path | None = None
    bar = _Progress(progress, total=7 + (precision != "fp32"))
    try:
        bar.stage("loading the student")
        G, source_info = _load_student(source)
        if resolution is not None and resolution != G.img_resolution:
            raise ExportError(f"resolution mismatch: the student renders {G.img_resolution}px, "
                              f"--resolution asked for {resolution}px")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        job = _Job(G, fmt, tmp, precision, w_input, noise, batch, truncation_psi, end_to_end, opset, source_info, bar)
        manifest = job.run(parity)
        bar.stage("moving into place")
        _move_into_place(tmp, out)
        tmp = None
        bar.close()
        return manifest
    except BaseException:
        bar.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):  # parents this call created
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` into ``directory``, atomically (strict JSON: no NaN or inf)."""
    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    return atomic_write(Path(directory) / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


# ------------------------------------------------------------------------------------------------ checks

def _check_args(fmt, precision, w_input, noise, batch, psi, end_to_end, resolution) -> None:
    for name, value, allowed in (("format", fmt, FORMATS), ("precision", precision, PRECISIONS),
                                 ("w_input", w_input, W_INPUTS), ("noise", noise, NOISE)):
        if value not in allowed:
            raise ExportError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    if precision == "int8" and fmt != "openvino":
        raise ExportError("int8 is offered for OpenVINO only (NNCF post-training quantisation): "
                          "use --format openvino --precision int8")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ExportError(f"batch must be a positive integer or dynamic; got {batch!r}")
    if psi is not None and not (isinstance(psi, (int, float)) and math.isfinite(psi)):
        raise ExportError(f"truncation psi must be a finite number; got {psi!r}")
    if end_to_end and (w_input != "w" or noise == "input"):
        raise ExportError("the end-to-end graph takes z only: it needs --w-input w and --noise const or none")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 16 or resolution & (resolution - 1)):
        raise ExportError(f"resolution must be a power of two >= 16; got {resolution!r}")


def _require_engines(fmt: str, precision: str) -> None:
    needs = {"onnx": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"]}[fmt]
    if precision == "int8":
        needs.append("nncf")
    pins = {"onnx": "onnx==1.23.2", "onnxruntime": "onnxruntime==1.31.1", "openvino": "openvino==2026.4.1",
            "nncf": "nncf==3.4.0"}
    for mod in needs:
        try:
            __import__(mod)
        except ImportError as err:
            raise ExportError(f"{mod} is not installed ({err}), and the {fmt} {precision} export needs it: "
                              f"pip install {pins[mod]}") from None


def _prepare_out(out: Path, force: bool) -> list[Path]:
    """Check the target and create its missing parents; returns the directories created (to undo)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"output directory {out} exists and is not empty; pass --force to replace it")
    missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()][::-1]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot create output directory {out.parent}: {err.strerror}") from None
    if not os.access(out.parent, os.W_OK | os.X_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        for d in reversed(missing):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise ExportError(f"output directory {out} is not writable")
    return missing


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.is_dir():
        if any(out.iterdir()):  # --force: swap, then delete the old contents
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "x")
        else:
            out.rmdir()
    os.replace(tmp, out)
    os.chmod(out, 0o777 & ~current_umask())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load_student(source: Any):
    """(StudentGenerator, provenance dict); teachers and other files are refused with a hint."""
    from mobilestylegan.student.generator import StudentGenerator

    if isinstance(source, StudentGenerator):
        return source, {"spec": "in-memory StudentGenerator", "info": _jsonable(getattr(source, "info", {}))}
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
        _refuse_teacher(Path(spec))
        raise  # not reached: _refuse_teacher always raises
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    info = {"spec": spec, "info": _jsonable(getattr(G, "info", {}))}
    if spec not in PRETRAINED:
        info["sha256"] = sha256_file(spec)
    return G, info


def _refuse_teacher(path: Path) -> None:
    from teacher.formats import read_checkpoint
    from teacher.formats.common import CheckpointError

    try:
        ck = read_checkpoint(path)
    except CheckpointError:
        raise ExportError(f"{path} holds no student (expected a native student checkpoint, a MobileStyleGAN.pytorch "
                          "Lightning .ckpt or a pretrained name such as ffhq-1024)") from None
    if ck.g_config is not None:
        raise ExportError(f"{path} is a StyleGAN2 teacher ({ck.source_format}, {ck.g_config.img_resolution}px), not a "
                          f"student; distil it first (python train.py experiment=... teacher.source={path}) and "
                          "export the student checkpoint") from None
    raise ExportError(f"{path} holds no student (a {ck.source_format} file without a generator)") from None


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=str))
    except (TypeError, ValueError):
        return str(obj)


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="export", unit="step", leave=False,
                            bar_format="{desc}: {n}/{total} {postfix} [{elapsed}]")

    def stage(self, name: str) -> None:
        if self.bar is not None:
            if self.bar.postfix:
                self.bar.update(1)
            self.bar.set_postfix_str(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------------ the job

class _Job:
    """One export into a temporary directory: build, convert, check, write the manifest."""

    def __init__(self, G, fmt, tmp: Path, precision, w_input, noise, batch, psi, end_to_end, opset, source_info, bar):
        from mobilestylegan.student.lean import LeanGenerator, LeanMapping, LeanSynthesis

        self.G = G.float().cpu().eval()
        self.fmt, self.tmp, self.precision, self.w_input, self.noise = fmt, tmp, precision, w_input, noise
        self.batch, self.opset, self.source_info, self.bar = batch, opset, source_info, bar
        self.psi = None if psi in (None, 1, 1.0) else float(psi)
        # Styles folded into per-sample weights (no pass over a feature map for them; ~10% faster in bf16 at
        # 1024 px) need a fixed batch (it becomes conv groups), and INT8 needs constant conv weights to
        # quantise: a dynamic batch axis and int8 multiply the feature maps instead.
        self.modulation = "activations" if batch is None or precision == "int8" else "weights"
        self.graphs: dict[str, torch.nn.Module] = {
            "mapping": LeanMapping(G.mapping, truncation_psi=self.psi).eval(),
            "synthesis": LeanSynthesis(G.synthesis, w_input=w_input, noise=noise, modulation=self.modulation).eval(),
        }
        if end_to_end:
            lean_w = (self.graphs["synthesis"] if w_input == "w"
                      else LeanSynthesis(G.synthesis, "w", noise, modulation=self.modulation))
            self.graphs["generator"] = LeanGenerator(self.graphs["mapping"], lean_w).eval()
        for m in self.graphs.values():
            m.requires_grad_(False)
        self.ext = ".onnx" if fmt == "onnx" else ".xml"
        self.timings: dict[str, float] = {}

    # -- graph I/O ---------------------------------------------------------------------------------------
    def io(self, name: str) -> tuple[list[str], list[tuple[int, ...]], list[str], list[tuple[int, ...]]]:
        m = self.graphs[name]
        b = self.batch or 1
        G = self.G
        out_name, out_shape = ("w", (b, G.w_dim)) if name == "mapping" else ("img", (b, 3, G.img_resolution, G.img_resolution))
        return list(m.input_names), [tuple(s) for s in m.input_shapes(b)], [out_name], [out_shape]

    def files(self, name: str) -> list[str]:
        return [name + ".onnx"] if self.fmt == "onnx" else [name + ".xml", name + ".bin"]

    # -- run -------------------------------------------------------------------------------------------------
    def run(self, parity: bool) -> dict[str, Any]:
        self.bar.stage(f"converting to {self.fmt}")
        t0 = time.perf_counter()
        for name in self.graphs:
            self.convert(name)
        self.timings["convert_s"] = time.perf_counter() - t0
        if self.noise == "input":
            maps = self.G.synthesis.make_noise(1, "const")
            names = self.graphs["synthesis"].input_names[1:]
            np.savez(self.tmp / NOISE_CONST_FILE, **{n: m.detach().float().numpy() for n, m in zip(names, maps)})
        manifest = self.manifest()
        write_manifest(self.tmp, manifest)

        self.bar.stage("parity vs PyTorch")
        t0 = time.perf_counter()
        manifest["parity"] = self.parity() if parity else {"run": False}
        self.timings["parity_s"] = time.perf_counter() - t0

        if self.precision != "fp32":
            self.bar.stage(f"making the {self.precision} variant")
            t0 = time.perf_counter()
            self.make_variant(manifest)
            self.timings["variant_s"] = time.perf_counter() - t0
            write_manifest(self.tmp, manifest)

        self.bar.stage("size gate")
        manifest["size_gate"] = self.size_gate(manifest)
        for name in self.graphs:
            g = manifest["graphs"][name]
            g["bytes"] = sum((self.tmp / f).stat().st_size for f in g["files"])

        self.bar.stage(f"quality ({len(QUALITY_SEEDS)} seeds)")
        t0 = time.perf_counter()
        manifest["quality"] = self.quality(manifest)
        self.timings["quality_s"] = time.perf_counter() - t0
        manifest["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}

        self.bar.stage("writing the manifest")
        write_manifest(self.tmp, manifest)
        return manifest

    def convert(self, name: str) -> None:
        module = self.graphs[name]
        in_names, in_shapes, out_names, _ = self.io(name)
        example = tuple(module.example_inputs(self.batch or 1))
        onnx_path = self.tmp / (name + ".onnx" if self.fmt == "onnx" else f".{name}.onnx")
        dynamic = {n: {0: "batch"} for n in in_names + out_names} if self.batch is None else None
        # Plain torch ops: trace with autograd on so no inference-only in-place branch is recorded.
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, str(onnx_path), input_names=in_names, output_names=out_names,
                              opset_version=self.opset, dynamo=False, do_constant_folding=True, dynamic_axes=dynamic)
        import onnx

        onnx.checker.check_model(str(onnx_path))
        if self.fmt == "openvino":
            # read_model, not convert_model: convert_model's graph fusions merge each baked noise map with the
            # next bias into one [1, C, r, r] constant, C times the map (1.4x the weights on a tiny student,
            # several times at 1024). The CPU plugin fuses what it needs at compile time.
            import openvino as ov

            model = ov.Core().read_model(str(onnx_path))
            model.set_friendly_name(f"mobilestylegan_{name}")
            ov.save_model(model, str(self.tmp / f"{name}.xml"), compress_to_fp16=False)
            del model
            onnx_path.unlink()

    # -- references -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def reference_w(self, seeds) -> torch.Tensor:
        """The PyTorch student's w for seeds (baked psi applied), ``[N, w_dim]``."""
        from mobilestylegan.student.sampling import seeded_z
        from teacher.mapping import truncate

        m = self.G.mapping
        return truncate(m.embed(seeded_z(list(seeds), m.z_dim)), m.w_avg, 1.0 if self.psi is None else self.psi)

    def parity_inputs(self) -> dict[str, list[torch.Tensor]]:
        """Inputs for each graph: seeded z; w (or W+ mixing two seeds' ws); random noise maps."""
        seeds = list(PARITY_SEEDS)
        from mobilestylegan.student.sampling import seeded_z

        z = seeded_z(seeds, self.G.z_dim)
        w = self.reference_w(seeds)
        if self.w_input == "wplus":
            w2 = self.reference_w([s + 100 for s in seeds])
            cut = self.G.num_ws // 2
            syn_in = [torch.cat([w[:, None].expand(-1, cut, -1), w2[:, None].expand(-1, self.G.num_ws - cut, -1)], 1)]
        else:
            syn_in = [w]
        if self.noise == "input":
            g = torch.Generator().manual_seed(1234)
            syn_in += [torch.randn(len(seeds), *s, generator=g) for s in self.G.synthesis.noise_shapes]
        return {"mapping": [z], "synthesis": syn_in, "generator": [z]}

    @torch.no_grad()
    def reference(self, name: str, inputs: list[torch.Tensor]) -> np.ndarray:
        """The PyTorch student's output in float64: the exact value, so the parity budget measures the exported
        graph's rounding only (at 1024 px the float32 student itself is ~6e-5 away from it)."""
        import copy

        from teacher.mapping import truncate

        if not hasattr(self, "G64"):
            self.G64 = copy.deepcopy(self.G).double()
        G, inputs = self.G64, [t.double() for t in inputs]
        psi = 1.0 if self.psi is None else self.psi
        if name == "mapping":
            return truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi).numpy()
        if name == "synthesis":
            if self.noise == "input":
                return G.synthesis(inputs[0], noise=list(inputs[1:])).numpy()
            return G.synthesis(inputs[0], noise_mode=self.noise).numpy()
        w = truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi)
        return G.synthesis(w, noise_mode=self.noise).numpy()

    # -- checks -----------------------------------------------------------------------------------------
    def parity(self) -> dict[str, Any]:
        from export.runtime import load_runtime

        backends = ["onnxruntime", "openvino"] if self.fmt == "onnx" else ["openvino"]
        results: dict[str, Any] = {}
        inputs = self.parity_inputs()
        refs = {name: self.reference(name, inputs[name]) for name in self.graphs}
        tolerances = {name: parity_tolerance(r) for name, r in refs.items()}
        failures = []
        for backend in backends:
            if backend == "openvino" and self.fmt == "onnx":
                try:
                    import openvino  # noqa: F401
                except ImportError:
                    results["openvino_f32"] = "not run: openvino is not installed"
                    continue
            rt = load_runtime(self.tmp, backend=backend, precision_hint="f32" if backend == "openvino" else None)
            key = "openvino_f32" if backend == "openvino" else backend
            results[key] = {}
            for name, graph in rt.graphs.items():
                arrays = [t.numpy() for t in inputs[name]]
                got = rt._batched(graph.run, arrays)
                diff = max_abs_diff(got, refs[name])
                results[key][name] = diff
                if not diff <= tolerances[name]:
                    failures.append(f"{key} {name} max |diff| {diff:.3g} > {tolerances[name]:.3g}")
            del rt
        if failures:
            raise ExportError(f"parity check failed on seeds {list(PARITY_SEEDS)}: " + "; ".join(failures)
                              + "; nothing was written")
        return {"run": True, "seeds": list(PARITY_SEEDS), "metric": "max abs difference",
                "tolerance": tolerances, "tolerance_rule": PARITY_RULE,
                "reference": "PyTorch student in float64, same inputs; W+ graphs get two seeds' ws mixed, noise "
                             "inputs get random maps", "max_abs_diff": results, "passed": True}

    def size_gate(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The file holding the synthesis weights (``.onnx``, or the IR's ``.bin``; the ``.xml`` is a fixed-size
        text description of the ops, reported but not gated) against its fp32 parameter bytes."""
        g = manifest["graphs"]["synthesis"]
        gated = g["files"][0] if self.fmt == "onnx" else g["files"][1]
        file_bytes = (self.tmp / gated).stat().st_size
        total = sum((self.tmp / f).stat().st_size for f in g["files"])
        param_bytes = int(self.graphs["synthesis"].num_params_bytes())
        ratio = file_bytes / param_bytes
        if ratio > SIZE_LIMIT:
            raise ExportError(f"size gate failed: {gated} weighs {file_bytes} bytes, {ratio:.3f}x the {param_bytes} "
                              f"fp32 bytes of the graph's parameters and baked noise (limit {SIZE_LIMIT}x)")
        return {"gated_file": gated, "file_bytes": file_bytes, "fp32_param_bytes": param_bytes,
                "ratio": round(ratio, 4), "limit": SIZE_LIMIT, "passed": True,
                "all_synthesis_files_bytes": total, "all_files_ratio": round(total / param_bytes, 4)}

    def quality(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Seeded z -> exported mapping -> exported synthesis (const noise), as the runtime runs it by default."""
        from export.runtime import load_runtime

        seeds = list(QUALITY_SEEDS)
        rt = load_runtime(self.tmp)
        got = rt.render(seeds)
        with torch.no_grad():
            ref = self.G.synthesis(self.reference_w(seeds), noise_mode="none" if self.noise == "none" else "const").numpy()
        per_image = [pooled_psnr_db(got[i:i + 1], ref[i:i + 1]) for i in range(len(seeds))]
        overall = pooled_psnr_db(got, ref)
        gate = QUALITY_GATE_DB.get(self.precision)
        measured = {n: (g._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
                        if g.backend == "openvino" else "f32 (onnxruntime)") for n, g in rt.graphs.items()}
        del rt
        result = {"seeds": seeds, "metric": "PSNR dB, images clipped to [-1, 1], peak-to-peak 2",
                  "reference": "fp32 PyTorch student: seeded z -> mapping -> synthesis (const noise)",
                  "psnr_db": _finite(overall), "min_image_psnr_db": _finite(min(per_image)),
                  "max_abs_diff": float(np.abs(got - ref).max()), "gate_db": gate,
                  "measured_inference_precision": {k: str(v).lower() for k, v in measured.items()},
                  "passed": gate is None or overall >= gate}
        if not result["passed"]:
            raise ExportError(f"the {self.precision} variant reaches {overall:.1f} dB PSNR against fp32 PyTorch on "
                              f"{len(seeds)} seeds, below its {gate:g} dB gate; it is not offered (nothing was written)")
        return result

    # -- precision variants -----------------------------------------------------------------------------
    def make_variant(self, manifest: dict[str, Any]) -> None:
        if self.fmt == "onnx":  # fp16 (int8 was refused up front)
            for name in self.graphs:
                _onnx_weights_to_fp16(self.tmp / f"{name}.onnx")
            manifest["weights_dtype"] = "float16 (Cast to float32 in the graph; ONNX Runtime computes in float32)"
            return
        import openvino as ov

        core = ov.Core()
        if self.precision == "fp16":
            for name in self.graphs:
                path = self.tmp / f"{name}.xml"
                model = core.read_model(str(path))
                _save_ov(model, path, compress_to_fp16=True)
                # OpenVINO's CPU default (bf16 / f16 where supported) for the heavy graphs; the mapping in f32.
                manifest["graphs"][name]["inference_precision"] = "f32" if name == "mapping" else None
            manifest["weights_dtype"] = "float16"
            return
        quantize_int8 = _quantizer()
        calib = self.calibration_inputs()
        for name in ("synthesis", "generator"):
            if name not in self.graphs:
                continue
            path = self.tmp / f"{name}.xml"
            inputs = calib if name == "synthesis" else [{"z": c["__z"]} for c in calib]
            feeds = [{k: v for k, v in c.items() if not k.startswith("__")} for c in inputs]
            try:
                q = quantize_int8(core.read_model(str(path)), feeds)
            except ExportError:
                raise
            except Exception as err:  # NNCF raises many types; the user gets one line
                raise ExportError(f"INT8 quantisation of the {name} graph failed: {type(err).__name__}: {err}") from err
            _save_ov(q, path, compress_to_fp16=False)
        manifest["weights_dtype"] = "int8 synthesis (NNCF), float32 mapping"
        manifest["calibration"] = {"seeds": [CALIBRATION_SEEDS[0], CALIBRATION_SEEDS[-1]],
                                   "samples": len(CALIBRATION_SEEDS),
                                   "inputs": "seeded z -> PyTorch mapping (baked psi) -> w; const noise maps"}

    def calibration_inputs(self) -> list[dict[str, np.ndarray]]:
        from mobilestylegan.student.sampling import seeded_z

        b = self.batch or 1
        seeds = list(CALIBRATION_SEEDS)
        w = self.reference_w(seeds).numpy()
        z = seeded_z(seeds, self.G.z_dim).numpy()
        names = self.graphs["synthesis"].input_names
        noise = [m.detach().float().numpy() for m in self.G.synthesis.make_noise(1, "const")]
        out = []
        for i in range(0, len(seeds) - b + 1, b):
            x = w[i:i + b]
            if self.w_input == "wplus":
                x = np.repeat(x[:, None], self.G.num_ws, axis=1)
            d = {names[0]: x}
            if self.noise == "input":
                d.update({n: np.repeat(m, b, axis=0) for n, m in zip(names[1:], noise)})
            d["__z"] = z[i:i + b]
            out.append(d)
        return out

    # -- manifest ---------------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        G, dynamic = self.G, self.batch is None
        graphs = {}
        for name in self.graphs:
            in_names, in_shapes, out_names, out_shapes = self.io(name)
            graphs[name] = {"files": self.files(name), "inputs": io_spec(in_names, in_shapes, dynamic),
                            "outputs": io_spec(out_names, out_shapes, dynamic)}
            if self.fmt == "openvino":
                graphs[name]["inference_precision"] = "f32"
        syn = self.graphs["synthesis"]
        noise: dict[str, Any] = {"mode": self.noise}
        if self.noise == "input":
            noise.update(inputs=syn.input_names[1:], shapes=[i["shape"] for i in graphs["synthesis"]["inputs"][1:]],
                         const_file=NOISE_CONST_FILE,
                         meaning="unit-variance maps [B, 1, r, r] as the student takes them; the learned "
                                 "strengths are in the graph")
        elif self.noise == "const":
            noise["meaning"] = "the student's constant maps, premultiplied by their strengths, baked in"
        m: dict[str, Any] = {
            "format": FORMAT, "manifest_version": MANIFEST_VERSION, "toolkit_version": _version(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "artefact_format": self.fmt,
        }
        if self.fmt == "onnx":
            m["onnx_opset"] = self.opset
        m.update({
            "precision": self.precision, "weights_dtype": "float32",
            "batch": "dynamic" if dynamic else self.batch, "w_input": self.w_input, "modulation": self.modulation,
            "model": {"z_dim": G.z_dim, "w_dim": G.w_dim, "num_ws": G.num_ws, "img_resolution": G.img_resolution,
                      "channels": list(G.cfg.channels)},
            "noise": noise,
            "truncation": {"psi": self.psi, "baked_into_mapping": self.psi is not None,
                           "w_avg": [float(x) for x in G.mapping.w_avg.detach().float().cpu()]},
            "output": {"name": "img", "layout": "NCHW", "channels": "RGB", "range": "about [-1, 1], not clamped",
                       "to_uint8": "clip to [-1, 1], (x + 1) * 127.5, round"},
            "seeds": "z for seed s = torch.randn(z_dim, generator=torch.Generator().manual_seed(s)); "
                     "export.runtime.seeded_z reproduces it without torch",
            "graphs": graphs,
            "source": self.source_info,
            "versions": _versions(self.fmt),
        })
        return m


def _save_ov(model, path: Path, compress_to_fp16: bool) -> None:
    """Re-save an IR over itself (read_model maps the .bin, so write elsewhere first)."""
    import openvino as ov

    stage = path.with_name(f".{path.stem}.new.xml")
    ov.save_model(model, str(stage), compress_to_fp16=compress_to_fp16)
    del model
    os.replace(stage.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(stage, path)


def _quantizer() -> Callable:
    try:
        from export.quantize import quantize_int8
    except ImportError as err:
        raise ExportError(f"INT8 export needs export.quantize.quantize_int8 (NNCF post-training quantisation), "
                          f"which this install lacks ({err}); export fp32 or fp16 instead") from None
    return quantize_int8


def _onnx_weights_to_fp16(path: Path) -> None:
    """Store every float32 initializer as float16, each followed by a Cast back to float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < 2:
            keep.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max(initial=0) > 65504:
            keep.append(init)  # out of fp16 range: keep float32
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mobilestylegan-toolkit")
    except PackageNotFoundError:
        return "unknown"


def _versions(fmt: str) -> dict[str, str]:
    out = {"torch": torch.__version__}
    for mod in (("onnx", "onnxruntime") if fmt == "onnx" else ()) + ("openvino",):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out
