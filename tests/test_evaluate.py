"""mobilestylegan-eval end to end on tiny generators, random weights and tiny network inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mobilestylegan.cli import evaluate as E
from mobilestylegan.io.images import save_png, to_uint8
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.metrics import measures as M
from mobilestylegan.metrics.evaluator import EvalOptions, Evaluator
from mobilestylegan.metrics.registry import ppl
from mobilestylegan.metrics.sources import Source, load_stats, save_stats
from mobilestylegan.nets import inception as inc
from mobilestylegan.nets import vgg as vgg_mod
from tests.helpers.teachers import tiny_teacher_student_pair

pytestmark = pytest.mark.usefixtures("one_thread", "no_weight_files")

# Tiny network inputs: every number is then non-comparable, which the lines must say.
FAST = [
    "--allow-random-weights",
    "--inception-size",
    "75",
    "--pr-size",
    "32",
    "--lpips-size",
    "32",
    "--kid-subsets",
    "5",
    "--batch-size",
    "8",
    "--quiet",
]
LINE_KEYS = {"metric", "value", "gen", "gen_hash", "ref", "ref_hash", "truncation", "seed", "comparable"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval_models")
    T, _ = tiny_teacher_student_pair(d)
    imgs = d / "real"
    imgs.mkdir()
    with torch.no_grad():  # "real" images: the teacher's own renders, 24 of them
        out = T(torch.randn(24, 32, generator=torch.Generator().manual_seed(9)), noise_mode="random")
    for i, arr in enumerate(to_uint8(out)):
        save_png(arr, imgs / f"{i:03d}.png")
    return d


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generator_vs_folder_writes_self_describing_jsonl(models, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = [
        "--gen",
        str(models / "student.pt"),
        "--ref",
        str(models / "real"),
        "--metrics",
        "fid,kid,pr,ppl,complexity",
        "--num",
        "16",
        "--out",
        str(out),
        *FAST,
    ]
    assert E.main(argv) == 0
    lines = read_lines(out)
    assert [d["metric"] for d in lines] == ["fid", "kid", "precision", "recall", "ppl", "params", "macs"]
    for d in lines:
        assert LINE_KEYS <= set(d) and d["comparable"] is False
        assert "--allow-random-weights (tests only)" in d["not_comparable_because"]
        assert d["gen_hash"].startswith("sha256:"), d
        assert d["ref_hash"] is None or d["ref_hash"].startswith("sha256:"), d
    fid, kid, prec, rec, ppl, params, macs = lines
    assert fid["num_samples"] == 16 and fid["num_ref"] == 24 and fid["resize"] == "clean"
    assert fid["convention"] == {
        "network": "pt_inception-2015-12-05 (pytorch-fid port), pool3 2048-d",
        "weights": "random-seed0",
        "resize": "clean",
        "size": 75,
    }
    assert "--inception-size 75 (standard: 299)" in fid["not_comparable_because"]
    assert fid["value"] > 0 and np.isfinite(kid["value"]) and kid["std"] >= 0
    assert 0 <= prec["value"] <= 1 and 0 <= rec["value"] <= 1
    assert ppl["value"] > 0 and "eps=0.0001" in ppl["implementation"] and "3/8" in ppl["crop"]
    assert "vgg-unit" in ppl["distance"]
    student = load_generator_any(str(models / "student.pt"), "cpu")
    assert params["value"] == sum(p.numel() for p in student.synthesis.parameters())
    assert macs["value"] > 1e5 and macs["macs_paper"] >= macs["value"]
    table = capsys.readouterr().out
    assert "fid" in table and "precision" in table and "NO" in table


def test_student_vs_teacher_on_the_same_latents_and_noise(models, tmp_path):
    out = tmp_path / "st.jsonl"
    assert (
        E.main(
            [
                "--gen",
                str(models / "student.pt"),
                "--gen",
                str(models / "teacher.pt"),
                "--ref",
                str(models / "teacher.pt"),
                "--metrics",
                "fidelity,fid",
                "--num",
                "10",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    lines = read_lines(out)
    by = {(d["gen"].rsplit("/", 1)[-1], d["metric"]): d for d in lines}
    assert set(by) == {(g, m) for g in ("student.pt", "teacher.pt") for m in ("psnr", "l1", "perceptual", "fid")}
    assert by["student.pt", "psnr"]["noise"] == "random, seeded per sample; both generators get the same maps"
    s_psnr, s_l1 = by["student.pt", "psnr"]["value"], by["student.pt", "l1"]["value"]
    assert 0 < s_psnr < 60 and 0 < s_l1 < 1 and by["student.pt", "perceptual"]["value"] > 0
    assert by["student.pt", "fid"]["value"] > 0 and by["student.pt", "psnr"]["num_samples"] == 10
    # The teacher against itself: same z, w and noise give identical images, so every distance is 0.
    assert by["teacher.pt", "psnr"]["value"] == pytest.approx(100.0)
    assert by["teacher.pt", "l1"]["value"] == 0 and by["teacher.pt", "perceptual"]["value"] == 0
    assert by["teacher.pt", "fid"]["value"] < 1e-6


def test_reference_statistics_are_cached_by_content(models, tmp_path, monkeypatch):
    argv = [
        "--gen",
        str(models / "teacher.pt"),
        "--ref",
        str(models / "real"),
        "--metrics",
        "fid,kid",
        "--num",
        "12",
        "--out",
        str(tmp_path / "a.jsonl"),
        *FAST,
    ]
    assert E.main(argv) == 0
    cached = sorted((tmp_path / "cache" / "stats").glob("*.npz"))
    assert len(cached) == 1 and "-inception-" in cached[0].name
    first = read_lines(tmp_path / "a.jsonl")

    def no_reading(self, src):
        raise AssertionError("the reference folder was read again instead of the cache")

    monkeypatch.setattr(Evaluator, "_folder_batches", no_reading)
    assert E.main(argv) == 0
    second = read_lines(tmp_path / "a.jsonl")[len(first) :]
    assert [(d["metric"], d["value"], d.get("std")) for d in second] == [
        (d["metric"], d["value"], d.get("std")) for d in first
    ]
    # Another resize convention is another cache entry (and another number).
    monkeypatch.undo()
    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "cache"))
    assert E.main([*argv, "--resize", "legacy"]) == 0
    assert len(list((tmp_path / "cache" / "stats").glob("*.npz"))) == 2


def test_statistics_file_round_trip(models, tmp_path, capsys):
    stats = tmp_path / "ref_stats.npz"
    common = ["--gen", str(models / "student.pt"), "--metrics", "fid,kid,pr", "--num", "12", *FAST]
    assert (
        E.main(
            [*common, "--ref", str(models / "real"), "--save-ref-stats", str(stats), "--out", str(tmp_path / "a.jsonl")]
        )
        == 0
    )
    loaded = load_stats(stats)
    assert loaded["header"]["format"] == "mobilestylegan-stats" and loaded["header"]["num"] == 24
    assert loaded["features"].shape == (24, 2048) and loaded["vgg_features"].shape == (24, 4096)
    mu, sigma = M.feature_stats(loaded["features"])
    assert np.allclose(loaded["mu"], mu) and np.allclose(loaded["sigma"], sigma)
    assert E.main([*common, "--ref", str(stats), "--out", str(tmp_path / "b.jsonl")]) == 0
    a, b = read_lines(tmp_path / "a.jsonl"), read_lines(tmp_path / "b.jsonl")
    assert [d["value"] for d in a] == pytest.approx([d["value"] for d in b], rel=1e-9)
    assert b[0]["ref_hash"].startswith("sha256:") and b[0]["ref_hash"] != a[0]["ref_hash"]
    # Mean/covariance-only files refuse KID (FID from them: test_fid_from_moments_only_file); another
    # convention is refused.
    save_stats(tmp_path / "moments.npz", loaded["header"], loaded["mu"], loaded["sigma"], None, None)
    capsys.readouterr()
    assert E.main([*common, "--ref", str(tmp_path / "moments.npz")]) == 2
    assert "holds only mean/covariance" in capsys.readouterr().err
    assert E.main([*common, "--ref", str(stats), "--resize", "legacy"]) == 2
    assert "resize='clean' (this run: 'legacy')" in capsys.readouterr().err


@pytest.mark.slow
def test_fid_from_moments_only_file(models, tmp_path):
    """A file with mean and covariance only: FID through the 2048 x 2048 eigendecompositions (seconds)."""
    stats = tmp_path / "ref_stats.npz"
    common = ["--gen", str(models / "student.pt"), "--metrics", "fid", "--num", "12", *FAST]
    assert (
        E.main(
            [*common, "--ref", str(models / "real"), "--save-ref-stats", str(stats), "--out", str(tmp_path / "a.jsonl")]
        )
        == 0
    )
    loaded = load_stats(stats)
    save_stats(tmp_path / "moments.npz", loaded["header"], loaded["mu"], loaded["sigma"], None, None)
    assert E.main([*common, "--ref", str(tmp_path / "moments.npz"), "--out", str(tmp_path / "b.jsonl")]) == 0
    a, b = read_lines(tmp_path / "a.jsonl")[0], read_lines(tmp_path / "b.jsonl")[0]
    assert b["num_ref"] == 24 and b["value"] == pytest.approx(a["value"], rel=1e-6)


def test_missing_weights_error_names_file_url_and_checksum(models, tmp_path, capsys):
    assert E.main(["--gen", str(models / "student.pt"), "--ref", str(models / "real"), "--num", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert inc.INCEPTION_URL in err and "6726825d" in err and "--inception" in err
    assert str(tmp_path / "cache" / "weights" / inc.INCEPTION_FILENAME) in err
    assert E.main(["--gen", str(models / "student.pt"), "--metrics", "ppl", "--num", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert vgg_mod.VGG16_URL in err and "397923af" in err


class ConstantGenerator(nn.Module):
    """Ignores its latents: a fixed image whatever z and w are."""

    z_dim = w_dim = 8
    num_ws, img_resolution = 3, 32

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Parameter(torch.rand(1, 3, 32, 32) * 2 - 1)
        self.mapping = lambda z, truncation_psi=1.0: z[:, None].expand(-1, self.num_ws, -1) * 3
        self.synthesis = lambda ws, noise=None, inference=False: self.image.expand(ws.shape[0], -1, -1, -1)


def test_ppl_is_zero_for_a_generator_that_ignores_its_input(models):
    args = E.build_parser().parse_args(["--gen", "x", "--metrics", "ppl", "--num", "8", *FAST])
    ev = Evaluator(EvalOptions.from_namespace(args), ["ppl"])
    value, info = ppl(ev, Source("const", "generator", "none", G=ConstantGenerator()))
    assert value == 0.0 and info["distance"].startswith("vgg-unit")
    G = load_generator_any(str(models / "teacher.pt"), "cpu")
    assert ppl(ev, Source("teacher", "generator", "none", G=G))[0] > 0


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--gen", "{student}", "--metrics", "fid,bogus"], "unknown metric(s) bogus"),
        (["--gen", "{student}", "--metrics", "fid"], "need --ref"),
        (["--gen", "{student}", "--ref", "{real}", "--metrics", "fidelity"], "fidelity needs a generator as --ref"),
        (["--gen", "{real}", "--metrics", "ppl"], "ppl needs a generator as --gen"),
        (["--gen", "{student}", "--ref", "{real}", "--num", "1"], "--num must be >= 2"),
        (["--gen", "missing.pt", "--ref", "{real}"], "neither a file nor a pretrained name"),
        (["--gen", "{student}", "--ref", "{real}", "--out", "/nonexistent/dir/x.jsonl"], "does not exist"),
        (
            ["--gen", "{student}", "--ref", "{real}", "--device", "cuda:7"]
            if not torch.cuda.is_available()
            else ["--gen", "{student}", "--ref", "{real}", "--batch-size", "0"],
            "cuda" if not torch.cuda.is_available() else "batch-size",
        ),
    ],
)
def test_bad_arguments_give_one_clear_message(models, capsys, argv, match):
    fill = {"student": models / "student.pt", "real": models / "real"}
    assert E.main([a.format(**fill) for a in argv] + FAST) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1
