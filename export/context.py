"""What one export is asked for (:class:`ExportOptions`) and what it works on (:class:`ExportContext`).

The options are checked before any work starts: here for what holds for every format (names, a positive batch, a
finite psi, ...), and by :func:`export.targets.options_for` for what the chosen format offers. The context holds the
student, its lean graphs, the temporary directory the export is built in, and the float64 references every gate
compares with; formats and gates read it, and formats record what they made in ``ctx.records``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.errors import ExportError
from mobilestylegan.student.lean import NOISE_SOURCES, W_INPUTS, LeanGenerator, LeanMapping, LeanSynthesis

if TYPE_CHECKING:
    from mobilestylegan.nets.encoder import LatentEncoder
    from mobilestylegan.student.generator import StudentGenerator

PRECISIONS = ("fp32", "fp16", "int8")
NOISE = NOISE_SOURCES
ONNX_OPSET = 17
NOISE_CONST_FILE = "noise_const.npz"


@dataclass(frozen=True)
class ExportOptions:
    """Every option of one export, with the format's defaults filled in (see :func:`export.exporter.export`).

    Build it with :func:`export.targets.options_for`, which checks it.
    """

    format: str
    precision: str
    w_input: str
    noise: str = "const"
    batch: int | None = 1
    truncation_psi: float | None = None
    end_to_end: bool = False
    resolution: int | None = None
    opset: int = ONNX_OPSET
    compute_units: str | None = None
    parity: bool = True

    @property
    def psi(self) -> float | None:
        """The truncation baked into the mapping graph; None when there is none (psi 1 truncates nothing)."""
        return None if self.truncation_psi in (None, 1, 1.0) else float(self.truncation_psi)

    def check_common(self) -> None:
        """The names of precisions, synthesis inputs and noise sources."""
        for name, value, allowed in (
            ("precision", self.precision, PRECISIONS),
            ("w_input", self.w_input, W_INPUTS),
            ("noise", self.noise, NOISE),
        ):
            if value not in allowed:
                raise ExportError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

    def check_values(self) -> None:
        """Values that no format can take."""
        batch, psi, resolution = self.batch, self.truncation_psi, self.resolution
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
            raise ExportError(f"batch must be a positive integer or dynamic; got {batch!r}")
        if psi is not None and not (isinstance(psi, (int, float)) and math.isfinite(psi)):
            raise ExportError(f"truncation psi must be a finite number; got {psi!r}")
        if self.end_to_end and (self.w_input != "w" or self.noise == "input"):
            raise ExportError("the end-to-end graph takes z only: it needs --w-input w and --noise const or none")
        if resolution is not None and (
            not isinstance(resolution, int) or resolution < 16 or resolution & (resolution - 1)
        ):
            raise ExportError(f"resolution must be a power of two >= 16; got {resolution!r}")


@dataclass
class ExportContext:
    """One export being built in ``tmp``: the student, its lean graphs and the references the gates compare with.

    Attributes:
        G: The student (float32, CPU, eval mode).
        options: The checked options.
        tmp: The temporary directory the files are written into (renamed onto the output directory at the end).
        source_info: Where the student came from (the manifest's ``source``).
        modulation: ``weights`` or ``activations``, as the format chose (see
            :class:`~mobilestylegan.student.lean.LeanSynthesis`).
        synthesis_options: Further keyword arguments of the format's lean synthesis graph.
        graphs: ``{"mapping", "synthesis"[, "generator"][, "encoder"]}`` lean modules, in export order.
        records: What the format recorded per graph while converting (e.g. a delegation report), by graph name.
        timings: Seconds per pipeline step.
        encoder: The latent encoder the export carries (its ``encoder`` graph), or None.
        encoder_info: The manifest's ``encoder`` entry (whether one is included, and why or from where).
    """

    G: StudentGenerator
    options: ExportOptions
    tmp: Path
    source_info: dict[str, Any]
    modulation: str = "activations"
    synthesis_options: dict[str, Any] = field(default_factory=dict)
    graphs: dict[str, torch.nn.Module] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    encoder: LatentEncoder | None = None
    encoder_info: dict[str, Any] = field(default_factory=lambda: {"included": False})
    _g64: Any = field(default=None, init=False, repr=False)
    _e64: Any = field(default=None, init=False, repr=False)
    _faces: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.G = self.G.float().cpu().eval()
        o, kw = self.options, self.synthesis_options
        mapping = LeanMapping(self.G.mapping, truncation_psi=o.psi).eval()
        synthesis = LeanSynthesis(
            self.G.synthesis, w_input=o.w_input, noise=o.noise, modulation=self.modulation, **kw
        ).eval()
        self.graphs = {"mapping": mapping, "synthesis": synthesis}
        if o.end_to_end:
            lean_w = (
                synthesis
                if o.w_input == "w"
                else LeanSynthesis(self.G.synthesis, "w", o.noise, modulation=self.modulation, **kw)
            )
            self.graphs["generator"] = LeanGenerator(mapping, lean_w).eval()
        if self.encoder is not None:
            from export.encoder import LeanEncoder

            self.graphs["encoder"] = LeanEncoder(self.encoder).eval()
        for m in self.graphs.values():
            m.requires_grad_(False)

    # -- graph I/O ---------------------------------------------------------------------------------------------
    def io(self, name: str) -> tuple[list[str], list[tuple[int, ...]], list[str], list[tuple[int, ...]]]:
        """Input names and shapes, output names and shapes of graph ``name`` (batch 1 when the batch is dynamic)."""
        m, b, G = self.graphs[name], self.options.batch or 1, self.G
        if name == "mapping":
            out_name, out_shape = "w", (b, G.w_dim)
        elif name == "encoder":
            out_name, out_shape = "ws", (b, G.num_ws, G.w_dim)
        else:
            out_name, out_shape = "img", (b, 3, G.img_resolution, G.img_resolution)
        return list(m.input_names), [tuple(s) for s in m.input_shapes(b)], [out_name], [out_shape]

    def example_inputs(self, name: str) -> tuple[torch.Tensor, ...]:
        """Inputs graph ``name`` is traced with."""
        return tuple(self.graphs[name].example_inputs(self.options.batch or 1))

    # -- references --------------------------------------------------------------------------------------------
    def reference_w(self, seeds: Sequence[int]) -> torch.Tensor:
        """The PyTorch student's w for seeds (baked psi applied), ``[N, w_dim]``."""
        from mobilestylegan.edit.latents import seeded_w

        return seeded_w(self.G, list(seeds), 1.0 if self.options.psi is None else self.options.psi)

    def parity_inputs(self, seeds: Sequence[int]) -> dict[str, list[torch.Tensor]]:
        """Inputs for each graph: seeded z; w (or W+ mixing two seeds' ws); random noise maps."""
        from mobilestylegan.student.sampling import seeded_z

        seeds = list(seeds)
        z = seeded_z(seeds, self.G.z_dim)
        w = self.reference_w(seeds)
        if self.options.w_input == "wplus":
            w2 = self.reference_w([s + 100 for s in seeds])
            cut, num_ws = self.G.num_ws // 2, self.G.num_ws
            syn_in = [torch.cat([w[:, None].expand(-1, cut, -1), w2[:, None].expand(-1, num_ws - cut, -1)], 1)]
        else:
            syn_in = [w]
        if self.options.noise == "input":
            g = torch.Generator().manual_seed(1234)
            syn_in += [torch.randn(len(seeds), *s, generator=g) for s in self.G.synthesis.noise_shapes]
        inputs = {"mapping": [z], "synthesis": syn_in, "generator": [z]}
        if self.encoder is not None:
            inputs["encoder"] = [self.encoder_inputs(seeds)]
        return inputs

    @torch.no_grad()
    def encoder_inputs(self, seeds: Sequence[int]) -> torch.Tensor:
        """The encoder's inputs for seeds: the fp32 student's faces (psi 0.7, const noise) stored as uint8, as a
        photo is, then preprocessed as the manifest says (block means: the box filter), ``[N, 3, S, S]``."""
        from mobilestylegan.edit.latents import seeded_w
        from mobilestylegan.nets.resize import area_downsample

        assert self.encoder is not None
        todo = [s for s in seeds if s not in self._faces]
        if todo:
            w = seeded_w(self.G, todo, 0.7)
            for s, wi in zip(todo, w):
                img = self.G.synthesis(wi[None], noise_mode="const", inference=True)
                u8 = ((img.clamp(-1, 1) + 1) * 127.5).round()
                self._faces[s] = area_downsample(u8 / 127.5 - 1, self.encoder.cfg.input_size)
        return torch.cat([self._faces[s] for s in seeds])

    @torch.no_grad()
    def reference(self, name: str, inputs: list[torch.Tensor]) -> np.ndarray:
        """The PyTorch student's output in float64: the exact value, so the parity budget measures the exported
        graph's rounding only (at 1024 px the float32 student itself is ~6e-5 away from it)."""
        from teacher.mapping import truncate

        G, inputs = self.g64(), [t.double() for t in inputs]
        psi = 1.0 if self.options.psi is None else self.options.psi
        noise = self.options.noise
        if name == "mapping":
            return truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi).numpy()
        if name == "encoder":
            return self.e64()(inputs[0]).numpy()
        if name == "synthesis":
            if noise == "input":
                return G.synthesis(inputs[0], noise=list(inputs[1:]), inference=True).numpy()
            return G.synthesis(inputs[0], noise_mode=noise, inference=True).numpy()
        w = truncate(G.mapping.embed(inputs[0]), G.mapping.w_avg, psi)
        return G.synthesis(w, noise_mode=noise, inference=True).numpy()

    def g64(self) -> StudentGenerator:
        """The student in float64 (made once)."""
        if self._g64 is None:
            self._g64 = copy.deepcopy(self.G).double()
        return self._g64

    def e64(self) -> LatentEncoder:
        """The encoder in float64 (made once)."""
        if self._e64 is None:
            self._e64 = copy.deepcopy(self.encoder).double().eval()
        return self._e64

    @torch.no_grad()
    def reference_faces(self, cases: Sequence[tuple[int, float]], exact: bool) -> np.ndarray:
        """seeded z -> mapping -> truncation by psi -> synthesis for each ``(seed, psi)``: in float64 (``exact``)
        or float32, ``[N, 3, R, R]``."""
        from mobilestylegan.student.sampling import seeded_z
        from teacher.mapping import truncate

        G = self.g64() if exact else self.G
        dtype = torch.float64 if exact else torch.float32
        out = []
        for seed, psi in cases:
            w = truncate(G.mapping.embed(seeded_z([seed], G.z_dim).to(dtype)), G.mapping.w_avg, psi)
            out.append(G.synthesis(w, noise_mode=self.options.noise, inference=True).numpy())
        return np.concatenate(out)
