"""One export in a temporary directory: the lean graphs, their float64 references, the steps and the manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export import gates
from export.convert import convert
from export.manifest import FORMAT, MANIFEST_NAME, MANIFEST_VERSION, graph_bytes, io_spec
from export.options import NOISE_CONST_FILE
from export.variants import make_variant
from teacher.fs import atomic_write


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` into ``directory``, atomically (strict JSON: no NaN or inf)."""
    import json

    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    return atomic_write(Path(directory) / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))


class Job:
    """One export into a temporary directory: build, convert, check, write the manifest."""

    def __init__(self, G, fmt, tmp: Path, precision, w_input, noise, batch, psi, end_to_end, opset, source_info, bar,
                 compute_units: str = "all"):
        from mobilestylegan.student.lean import LeanGenerator, LeanMapping, LeanSynthesis

        self.G = G.float().cpu().eval()
        self.fmt, self.tmp, self.precision, self.w_input, self.noise = fmt, tmp, precision, w_input, noise
        self.batch, self.opset, self.source_info, self.bar = batch, opset, source_info, bar
        self.compute_units = compute_units
        self.psi = None if psi in (None, 1, 1.0) else float(psi)
        # Styles folded into per-sample weights (no pass over a feature map for them: faster in bf16 at
        # 1024 px) need a fixed batch (it becomes conv groups), and INT8 needs constant conv weights to
        # quantise: a dynamic batch axis and int8 multiply the feature maps instead.
        # XNNPACK (ExecuTorch, LiteRT) takes constant weights only, too. The web page keeps the folded weights:
        # ONNX Runtime Web ran them ~7% faster at 1024 px than the activation form (1 and 2 WASM threads).
        self.modulation = ("activations" if batch is None or precision == "int8"
                           or fmt in ("executorch", "coreml", "tflite") else "weights")
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
        self.ext = {"onnx": ".onnx", "web": ".onnx", "executorch": ".pte", "tflite": ".tflite"}.get(fmt, ".xml")
        self.delegation: dict[str, Any] = {}  # executorch: what XNNPACK took, per graph
        self.coreml_spec: dict[str, Any] = {}  # coreml: each model's checked interface and operation count
        self.web: dict[str, Any] = {}  # web: the site's files
        self.litert: dict[str, Any] = {}  # tflite: each file's signature and operators
        self.timings: dict[str, float] = {}

    # -- graph I/O ---------------------------------------------------------------------------------------
    def io(self, name: str) -> tuple[list[str], list[tuple[int, ...]], list[str], list[tuple[int, ...]]]:
        m = self.graphs[name]
        b = self.batch or 1
        G = self.G
        out_name, out_shape = ("w", (b, G.w_dim)) if name == "mapping" else ("img", (b, 3, G.img_resolution, G.img_resolution))
        return list(m.input_names), [tuple(s) for s in m.input_shapes(b)], [out_name], [out_shape]

    def files(self, name: str) -> list[str]:
        if self.fmt == "coreml":
            from export.coreml import files

            return files(name)
        return [name + ".xml", name + ".bin"] if self.fmt == "openvino" else [name + self.ext]

    # -- run -------------------------------------------------------------------------------------------------
    def run(self, parity: bool) -> dict[str, Any]:
        self.bar.stage(f"converting to {self.fmt}")
        t0 = time.perf_counter()
        for name in self.graphs:
            convert(self, name)
        self.timings["convert_s"] = time.perf_counter() - t0
        if self.fmt == "web":
            from export.web.site import write_directions, write_site

            self.web = write_site(self.tmp)
            self.web["directions"] = write_directions(self.tmp, self.G)
            self.web["files"].append(self.web["directions"]["file"])
        if self.noise == "input":
            maps = self.G.synthesis.make_noise(1, "const")
            names = self.graphs["synthesis"].input_names[1:]
            np.savez(self.tmp / NOISE_CONST_FILE, **{n: m.detach().float().numpy() for n, m in zip(names, maps)})
        manifest = self.manifest()
        write_manifest(self.tmp, manifest)

        self.bar.stage("parity vs PyTorch")
        t0 = time.perf_counter()
        manifest["parity"] = gates.parity(self) if parity else {"run": False}
        self.timings["parity_s"] = time.perf_counter() - t0

        if self.precision != "fp32" and self.fmt != "coreml":  # Core ML converts at its precision directly
            self.bar.stage(f"making the {self.precision} variant")
            t0 = time.perf_counter()
            make_variant(self, manifest)
            self.timings["variant_s"] = time.perf_counter() - t0
            write_manifest(self.tmp, manifest)

        self.bar.stage("size gate")
        manifest["size_gate"] = gates.size_gate(self, manifest)
        for name in self.graphs:
            g = manifest["graphs"][name]
            g["bytes"] = graph_bytes([self.tmp / g["files"][0]])

        self.bar.stage(f"quality ({len(gates.QUALITY_SEEDS)} seeds)")
        t0 = time.perf_counter()
        manifest["quality"] = gates.quality(self, manifest)
        self.timings["quality_s"] = time.perf_counter() - t0
        if self.fmt == "web":
            self.bar.stage("the page in headless Chromium")
            t0 = time.perf_counter()
            manifest["browser"] = gates.browser(self)
            self.timings["browser_s"] = time.perf_counter() - t0
        manifest["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}

        self.bar.stage("writing the manifest")
        write_manifest(self.tmp, manifest)
        return manifest

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
        seeds = list(gates.PARITY_SEEDS)
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
        from teacher.mapping import truncate

        G, inputs = self.g64(), [t.double() for t in inputs]
        psi = 1.0 if self.psi is None else self.psi
        if name == "mapping":
            return truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi).numpy()
        if name == "synthesis":
            if self.noise == "input":
                return G.synthesis(inputs[0], noise=list(inputs[1:]), inference=True).numpy()
            return G.synthesis(inputs[0], noise_mode=self.noise, inference=True).numpy()
        w = truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi)
        return G.synthesis(w, noise_mode=self.noise, inference=True).numpy()

    def g64(self):
        """The student in float64 (made once)."""
        import copy

        if not hasattr(self, "_g64"):
            self._g64 = copy.deepcopy(self.G).double()
        return self._g64

    @torch.no_grad()
    def reference_faces(self, cases, exact: bool) -> np.ndarray:
        """seeded z -> mapping -> truncation by psi -> synthesis for each ``(seed, psi)``: in float64 (``exact``)
        or float32, ``[N, 3, R, R]``."""
        from mobilestylegan.student.sampling import seeded_z
        from teacher.mapping import truncate

        G = self.g64() if exact else self.G
        dtype = torch.float64 if exact else torch.float32
        out = []
        for seed, psi in cases:
            w = truncate(G.mapping.embed(seeded_z([seed], G.z_dim).to(dtype)), G.mapping.w_avg, psi)
            out.append(G.synthesis(w, noise_mode=self.noise, inference=True).numpy())
        return np.concatenate(out)

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
        if self.fmt in ("onnx", "web"):
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
        if self.fmt == "executorch":
            m["delegation"] = self.delegation
        if self.fmt == "web":
            m["web"] = self.web
        if self.fmt == "tflite":
            m["litert"] = {"graphs": self.litert, "delegate": "XNNPACK (the interpreter's default CPU delegate)",
                           "run": "Interpreter(model_path, num_threads=N).get_signature_runner()(**{input: array})"}
        if self.fmt == "coreml":
            m["coreml"] = {"models": self.coreml_spec, "deployment_target": "iOS16 / macOS13 (ML Program)",
                           "compute_units": {"default": self.compute_units,
                                             "meaning": "MLModelConfiguration.computeUnits the app loads the model "
                                                        "with (all, cpuOnly, cpuAndGPU, cpuAndNeuralEngine); "
                                                        "--check loads with it"},
                           "check": "mobilestylegan-export --check DIR on macOS compares Core ML with check_reference.npz"}
        return m


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mobilestylegan-toolkit")
    except PackageNotFoundError:
        return "unknown"


def _versions(fmt: str) -> dict[str, str]:
    out = {"torch": torch.__version__}
    from importlib.metadata import PackageNotFoundError, version

    if fmt == "web":
        from export.web.ort_files import VERSION

        out["onnxruntime-web"] = VERSION
    for mod in {"onnx": ("onnx", "onnxruntime", "openvino"), "web": ("onnx", "onnxruntime"),
                "executorch": ("executorch",),
                "coreml": ("coremltools",), "tflite": ("litert-torch", "ai-edge-litert")}.get(fmt, ("openvino",)):
        try:
            out[mod] = version(mod)
        except PackageNotFoundError:
            pass
    return out
