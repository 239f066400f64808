"""What a format is to the exporter: one :class:`Target` subclass per format, registered in :mod:`export.targets`.

The pipeline (:mod:`export.pipeline`) names no format: it asks the target what to write, how to check it and what to
say in the manifest. A target declares its facts as class attributes (name, precisions, engines, the runtime
backends that run its files, benchmark rows) and overrides the steps that differ from the defaults below. Each
format's toolchain is imported by the step that needs it, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from export.errors import ExportError

if TYPE_CHECKING:
    from export.context import ExportContext, ExportOptions

# The exact versions the base install pins: named in the message when an engine is missing.
PINNED = {
    "onnx": "pip install onnx==1.23.2",
    "onnxruntime": "pip install onnxruntime==1.31.1",
    "openvino": "pip install openvino==2026.4.1",
    "nncf": "pip install nncf==3.4.0",
}


@dataclass(frozen=True)
class BenchRow:
    """A ``mobilestylegan-bench`` row that times this format's export.

    Attributes:
        precision: The export's precision.
        backend: The runtime backend that runs the synthesis file (:data:`export.runtime.BACKENDS`), ``browser`` for
            the web page in headless Chromium, or None where nothing here runs it (the row reports its size only).
        hint: OpenVINO's inference precision for the row (None: the backend's default).
        threads: Threads the row always runs with, whatever ``--threads`` says (None: ``--threads``).
        note: Why the row is not timed here (``backend`` None).
        graph: What the row times, where it is not the lean synthesis graph in the backend.
    """

    precision: str
    backend: str | None
    hint: str | None = None
    threads: int | None = None
    note: str = ""
    graph: str = ""


class Target:
    """One export format. Subclasses set the class attributes and implement :meth:`convert`.

    Attributes:
        name: ``--format NAME`` and the manifest's ``artefact_format``.
        aliases: Other names ``--format`` accepts (an older name of the format).
        title: The format's name in messages.
        precisions: Each precision offered -> what it means for this format (shown in refusals).
        default_precision: When none is asked for.
        default_w_input: The synthesis input when none is asked for (``w`` or ``wplus``).
        extension: The suffix of each graph's file (see :meth:`files`).
        engines: Python modules the export needs -> the command that installs them; checked before any work.
        precision_engines: More modules a precision needs.
        takes: Options only some formats take (``opset``, ``compute_units``) that this one does.
        fixed_batch: The format has no dynamic batch axis.
        constant_weights: The format's runtime takes constant conv weights only (the styles then act on the
            activations, see :class:`~mobilestylegan.student.lean.LeanSynthesis`).
        converts_at_precision: :meth:`convert` writes the asked-for precision directly (no variant step).
        parity_backends: Runtime backends that run the fp32 files for the parity gate; the first is the export's own,
            the others are skipped with a note when not installed. Empty: the files run nowhere here.
        quality_not_run: Why the quality gate cannot run here (None: it runs in the export's own backend).
        checks_elsewhere: ``mobilestylegan-export --check DIR`` runs the export (:meth:`check_export`).
        extra_gates_stage: The progress bar's label and the manifest's timing key of :meth:`extra_gates` (None: the
            format has no gate of its own).
        distributions: Package versions recorded in the manifest.
        bench_rows: ``mobilestylegan-bench`` rows that time this format's export.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str]
    precisions: ClassVar[dict[str, str]]
    default_precision: ClassVar[str] = "fp32"
    default_w_input: ClassVar[str] = "w"
    extension: ClassVar[str]
    engines: ClassVar[dict[str, str]]
    precision_engines: ClassVar[dict[str, dict[str, str]]] = {}
    takes: ClassVar[tuple[str, ...]] = ()
    fixed_batch: ClassVar[bool] = False
    constant_weights: ClassVar[bool] = False
    converts_at_precision: ClassVar[bool] = False
    parity_backends: ClassVar[tuple[str, ...]] = ()
    quality_not_run: ClassVar[str | None] = None
    extra_gates_stage: ClassVar[tuple[str, str] | None] = None
    checks_elsewhere: ClassVar[bool] = False
    distributions: ClassVar[tuple[str, ...]] = ()
    bench_rows: ClassVar[dict[str, BenchRow]] = {}

    # -- before any work ---------------------------------------------------------------------------------------
    def check(self, options: ExportOptions) -> None:
        """Refuse what this format does not offer beyond its precisions (one :class:`ExportError`, before any
        work)."""
        if self.fixed_batch and options.batch is None:
            raise ExportError(f"the {self.name} export needs a fixed batch (--batch N); a dynamic batch is not offered")

    def require_engines(self, precision: str) -> None:
        """Import every module the export needs, or raise one error with the command that installs it."""
        for module, install in {**self.engines, **self.precision_engines.get(precision, {})}.items():
            try:
                __import__(module)
            except ImportError as err:
                raise ExportError(
                    f"{module} is not installed ({err}), and the {self.name} {precision} export needs it: {install}"
                ) from None

    def modulation(self, options: ExportOptions) -> str:
        """Where the styles act. Folded into the weights (no pass over a feature map for them: faster in bf16 at
        1024 px) needs a fixed batch, which becomes conv groups; runtimes that take constant weights only, and a
        dynamic batch axis, multiply the feature maps instead."""
        return "activations" if options.batch is None or self.constant_weights else "weights"

    def lean_synthesis_options(self) -> dict[str, Any]:
        """Extra keyword arguments of the :class:`~mobilestylegan.student.lean.LeanSynthesis` this format exports."""
        return {}

    # -- files ---------------------------------------------------------------------------------------------------
    def files(self, graph: str) -> list[str]:
        """The files of one graph, relative to the export directory; the first is the one a runtime opens."""
        return [graph + self.extension]

    def weights_file(self, graph: str) -> str:
        """The file that holds the graph's weights (what the size gate weighs); the rest describes the ops."""
        return self.files(graph)[0]

    # -- the pipeline's steps ----------------------------------------------------------------------------------
    def convert(self, ctx: ExportContext, graph: str) -> dict[str, Any] | None:
        """Write ``graph`` of ``ctx`` (fp32, or the asked-for precision with ``converts_at_precision``) into
        ``ctx.tmp``; returns what to record for it (kept in ``ctx.records[graph]``), or None."""
        raise NotImplementedError

    def write_extra_files(self, ctx: ExportContext) -> dict[str, Any]:
        """Files beside the graphs (a web page, say); returns manifest entries describing them."""
        return {}

    def make_variant(self, ctx: ExportContext) -> dict[str, Any]:
        """Turn the checked fp32 files into ``ctx.options.precision`` in place; returns the manifest entries that
        change (``weights_dtype`` at least; a dict entry updates the manifest's key by key)."""
        raise ExportError(f"the {self.name} export has no {ctx.options.precision} variant")

    def parity_elsewhere(self, ctx: ExportContext) -> dict[str, Any] | None:
        """Where the files run nowhere here: store what a check on another machine needs and return the manifest's
        ``parity`` entry. None (the default): the parity gate runs the files in :attr:`parity_backends`."""
        return None

    def extra_gates(self, ctx: ExportContext) -> dict[str, Any]:
        """Checks of this format after the quality gate; returns their manifest entries (raise to refuse)."""
        return {}

    # -- the manifest --------------------------------------------------------------------------------------------
    def manifest_header(self, ctx: ExportContext) -> dict[str, Any]:
        """Entries written right after ``artefact_format`` (e.g. the ONNX opset)."""
        return {}

    def graph_manifest(self, ctx: ExportContext, graph: str) -> dict[str, Any]:
        """Extra entries of one graph's manifest record."""
        return {}

    def manifest_extras(self, ctx: ExportContext) -> dict[str, Any]:
        """Entries written after the common ones (this format's records)."""
        return {}

    def versions(self) -> dict[str, str]:
        """The installed versions of :attr:`distributions` (the manifest's ``versions``, after torch's)."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for dist in self.distributions:
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                pass
        return out

    def compute_precision(self, precision: str) -> str:
        """What the files compute in when the runtime cannot say (OpenVINO reports its own)."""
        return "f32"

    # -- after the export ----------------------------------------------------------------------------------------
    def summary_lines(self, manifest: dict[str, Any], out: str) -> list[str]:
        """This format's lines of ``mobilestylegan-export``'s summary (after the common ones)."""
        return []

    def check_export(self, directory: Path, compute_units: str | None = None) -> tuple[bool, list[str]]:
        """``mobilestylegan-export --check DIR`` where :attr:`checks_elsewhere`: run the export where its runtime is;
        returns (passed, the lines to print)."""
        raise NotImplementedError(f"the {self.name} export is checked when it is made")

    def bench_unavailable(self) -> str | None:
        """Why this format's benchmark rows cannot run on this machine (None: they can)."""
        return None
