"""An export manifest's gate records, checked again from the files and a fresh PyTorch reference.

The exporter raises rather than write a failed record, so every ``"passed"`` in a manifest is a literal True: these
helpers never read it. They check the measured numbers against their recorded tolerances and gates, and recompute
what can be recomputed here (tolerances from float64 references, PSNR from the exported files)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from export.exporter import QUALITY_SEEDS
from export.runtime import load_runtime
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.sampling import seeded_z
from teacher.mapping import truncate
from teacher.numerics import F32_EPS, PARITY_RULE, PARITY_ULPS, parity_tolerance, pooled_psnr_db

QUALITY_GATE = 40.0  # dB: the gate of every fp16 / int8 variant


def _finite_float(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def check_parity_record(m: dict[str, Any], max_peak: float | None = None) -> None:
    """The manifest's parity record, checked again: every recorded max |diff| is a finite number within the
    recorded tolerance of its graph; with ``max_peak``, each tolerance is also the rule's for outputs peaking
    at most there (the exporter raises rather than record a failure, so its "passed" proves nothing)."""
    p = m["parity"]
    assert p["run"] is True and p["tolerance_rule"] == PARITY_RULE
    assert set(p["tolerance"]) == set(m["graphs"])
    unit = PARITY_ULPS * F32_EPS
    for graph, tol in p["tolerance"].items():
        assert unit <= tol <= unit * (max_peak or np.inf), (graph, tol)
    assert p["max_abs_diff"], p  # at least one backend measured
    for backend, diffs in p["max_abs_diff"].items():
        assert isinstance(diffs, dict) and set(diffs) == set(m["graphs"]), (backend, diffs)
        for graph, diff in diffs.items():
            assert _finite_float(diff) and 0 <= diff <= p["tolerance"][graph], (backend, graph, diff)


def fresh_parity_tolerances(G: StudentGenerator, seeds: list[int] | None = None) -> dict[str, float]:
    """parity_tolerance of the exporter's references recomputed here, for its default export (W input, const
    noise, run-time psi): the student in float64 on ``seeds`` (the record's; the exporter's PARITY_SEEDS)."""
    from export.exporter import PARITY_SEEDS

    z = seeded_z(list(PARITY_SEEDS) if seeds is None else seeds, G.z_dim)
    G64 = copy.deepcopy(G).double()
    with torch.no_grad():
        w = G.mapping.embed(z)  # psi 1: no truncation
        mapping_ref = G64.mapping.embed(z.double())
        synthesis_ref = G64.synthesis(w.double(), noise_mode="const")
    return {"mapping": parity_tolerance(mapping_ref), "synthesis": parity_tolerance(synthesis_ref)}


def check_parity_tolerances_are_fresh(m: dict[str, Any], G: StudentGenerator) -> None:
    """The recorded tolerances are the parity rule's on float64 references recomputed here, on the record's seeds
    (the exporter's PARITY_SEEDS), for a default export (W input, const noise, run-time psi)."""
    from export.exporter import PARITY_SEEDS

    p = m["parity"]
    assert p["seeds"] == list(PARITY_SEEDS)
    fresh = fresh_parity_tolerances(G, p["seeds"])
    assert set(p["tolerance"]) == set(fresh)
    for graph, tol in fresh.items():
        assert p["tolerance"][graph] == pytest.approx(tol, rel=1e-6), graph


def student_faces(G: StudentGenerator, seeds: list[int], psi: float = 1.0) -> np.ndarray:
    """The PyTorch student, in its own dtype, as the exporter's gates render it: seeded z -> mapping -> truncation
    -> synthesis (const noise), ``[N, 3, R, R]``."""
    m = G.mapping
    with torch.no_grad():
        z = seeded_z(seeds, m.z_dim).to(m.w_avg.dtype)
        return G.synthesis(truncate(m.embed(z), m.w_avg, psi), noise_mode="const", inference=True).numpy()


def check_quality_record(
    out: Path, G: StudentGenerator, m: dict[str, Any] | None = None, gate_db: float = QUALITY_GATE
) -> float:
    """The quality record of the export in ``out`` (``m``: its manifest, default: read from ``out``), recomputed:
    the exported files run by ``export.runtime.load_runtime(out)`` on the recorded seeds (the exporter's
    QUALITY_SEEDS) against the fp32 PyTorch student ``G``, pooled PSNR at or above ``gate_db``, the recorded gate and
    PSNR the recomputed ones. Returns the recomputed PSNR."""
    from export.manifest import read_manifest

    m = read_manifest(out) if m is None else m
    q = m["quality"]
    assert m["noise"]["mode"] == "const", m["noise"]  # the reference below renders the constant maps
    assert q["seeds"] == list(QUALITY_SEEDS) and q["gate_db"] == gate_db
    psi = m["truncation"]["psi"]
    got = load_runtime(out).render(q["seeds"])
    db = pooled_psnr_db(got, student_faces(G, q["seeds"], 1.0 if psi is None else psi))
    assert db >= gate_db, f"{db:.2f} dB < {gate_db} dB"
    assert _finite_float(q["psnr_db"]) and q["psnr_db"] == pytest.approx(db, abs=0.05), (q["psnr_db"], db)
    return db


def check_browser_record(
    out: Path, G: StudentGenerator, m: dict[str, Any] | None = None, gate_db: float = QUALITY_GATE
) -> None:
    """A web export's browser record (``m``: its manifest, default: read from ``out``): the browser's figures (measured
    in Chromium, not re-run here) within their recorded tolerances and gates, and those tolerances recomputed: the
    page vs the Python runtime within the parity rule of the runtime's images on the recorded cases (rendered again
    here from the files), the page vs PyTorch within the rule of the float64 student (fp32), else at the quality gate
    of the fp32 student; the canvas equal to ``to_uint8`` of the page's floats."""
    from export.manifest import read_manifest

    m = read_manifest(out) if m is None else m
    b = m["browser"]
    assert m["noise"]["mode"] == "const", m["noise"]  # the references below render the constant maps
    assert b["run"] is True and b["cases"], b
    cases = [(int(s), float(p)) for s, p in b["cases"]]
    rt = load_runtime(out, backend="onnxruntime")
    runtime_ref = np.concatenate([rt.render([s], truncation_psi=p) for s, p in cases])
    vs = b["vs_runtime"]
    assert vs["tolerance"] == pytest.approx(parity_tolerance(runtime_ref), rel=1e-6), vs
    assert _finite_float(vs["max_abs_diff"]) and 0 <= vs["max_abs_diff"] <= vs["tolerance"], vs
    vp = b["vs_pytorch"]
    if m["precision"] == "fp32":
        G64 = copy.deepcopy(G).double()
        with torch.no_grad():
            ref = np.concatenate([student_faces(G64, [s], p) for s, p in cases])  # float64: the exact value
        assert vp["tolerance"] == pytest.approx(parity_tolerance(ref), rel=1e-6), vp
        assert _finite_float(vp["max_abs_diff"]) and 0 <= vp["max_abs_diff"] <= vp["tolerance"], vp
    else:
        assert vp["gate_db"] == gate_db and _finite_float(vp["psnr_db"]) and vp["psnr_db"] >= gate_db, vp
    assert b["pixels"]["max_level_diff"] == 0, b["pixels"]
