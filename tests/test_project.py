"""Projection on tiny generators: live W+ entries, the optimisation reaching a generated target, the files of
mobilestylegan-project and the errors of latent files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilestylegan.cli.project import main as project_main
from mobilestylegan.edit.latents import load_latent, save_latent
from mobilestylegan.edit.losses import ms_ssim, noise_regularizer
from mobilestylegan.edit.project import ProjectOptions, project
from mobilestylegan.errors import UsageError
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.io.images import save_png, to_uint8
from mobilestylegan.io.latent_space import generator_hash, live_ws
from tests.helpers.students import export_student


@pytest.fixture(scope="module")
def student():
    return export_student(res=64, channels=(32, 32, 32, 16))


@pytest.fixture(scope="module")
def target(student):
    with torch.no_grad():
        w = student.mapping.embed(torch.randn(1, student.z_dim, generator=torch.Generator().manual_seed(5)))
        return student.synthesis(w, noise_mode="const")


def test_live_ws_follow_the_routing(student):
    """A fused student reads ws[0] (4x4 conv), ws[3i+1], ws[3i+2] (block i's convs) and the last block's head
    ws[3(n-1)+3]; the heads that fusing removed (ws[3i+3] of earlier blocks) and the spare last index are dead."""
    n = len(student.synthesis.layers)
    want = sorted({0} | {3 * i + 1 for i in range(n)} | {3 * i + 2 for i in range(n)} | {3 * (n - 1) + 3})
    assert live_ws(student) == live_ws(student, probe=True) == want and student.num_ws == 3 * n + 2
    from mobilestylegan.io.load import EMBEDDED_TEACHER, load_generator_any

    T = load_generator_any(EMBEDDED_TEACHER, "cpu")
    assert live_ws(T) == live_ws(T, probe=True) == list(range(T.num_ws))  # StyleGAN2 reads every entry


def test_ms_ssim_and_noise_regularizer():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 192, 192, generator=g)
    assert torch.allclose(ms_ssim(a, a), torch.ones(2, dtype=a.dtype), atol=1e-6)
    noisy = [ms_ssim(a, (a + s * torch.randn(a.shape, generator=g)).clamp(0, 1)) for s in (0.02, 0.1, 0.3)]
    assert (noisy[0] > noisy[1]).all() and (noisy[1] > noisy[2]).all() and (noisy[2] > 0).all()
    assert torch.allclose(ms_ssim(a, a.flip(0)), ms_ssim(a.flip(0), a))
    with pytest.raises(ValueError, match="at least 176 px"):
        ms_ssim(a[..., :100, :100], a[..., :100, :100])
    white = [torch.randn(1, 1, 64, 64, generator=g)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8, generator=g), size=64, mode="bilinear")]
    assert noise_regularizer(white) < 1e-2 * noise_regularizer(smooth)


def test_projection_reaches_a_generated_target(student, target):
    r = project(student, target, ProjectOptions(space="w", steps=150, w_avg_samples=2000))
    assert r.psnr_db > 40 and r.steps_done == 150 and not r.interrupted
    losses = np.asarray(r.losses)
    assert losses[-15:].mean() < 1e-2 * losses[:15].mean()  # down by orders of magnitude, on average
    assert (np.diff(losses.reshape(10, 15).mean(1)) < 0).all()  # and in every tenth of the run
    assert torch.equal(r.ws, r.ws[:, :1].expand_as(r.ws))  # W space: one w everywhere


def test_wplus_changes_only_live_entries_and_the_proxy_warms_up(student, target):
    r = project(
        student,
        target,
        ProjectOptions(space="wplus", steps=60, proxy_steps=30, proxy_resolution=16, refine_lr=0.1, w_avg_samples=2000),
    )
    from mobilestylegan.edit.project import w_statistics
    from teacher.numerics import psnr_db

    with torch.no_grad():
        start = float(psnr_db(student.synthesis(w_statistics(student, 2000)[0], noise_mode="const"), target)[0])
    assert r.phases == ["proxy"] * 30 + ["full"] * 30 and r.psnr_db > start + 3  # closer than the mean w
    proxy, full = np.asarray(r.losses[:30]), np.asarray(r.losses[30:])
    assert proxy[-5:].mean() < 0.8 * proxy[:5].mean() and full[-5:].mean() < full[:5].mean()  # both phases descend
    live = r.live
    for i in range(student.num_ws):
        if i not in live:  # a dead entry copies its nearest live entry below: it renders the same and moves with it
            below = max(j for j in live if j < i)
            assert torch.equal(r.ws[0, i], r.ws[0, below])
    assert len({tuple(r.ws[0, i].tolist()) for i in live}) == len(live)  # every live entry optimised on its own
    stopped = project(student, target, ProjectOptions(steps=50, w_avg_samples=500), stop=lambda: True)
    assert stopped.interrupted and stopped.steps_done == 1 and stopped.image.shape == target.shape
    from mobilestylegan.io.load import EMBEDDED_TEACHER, load_generator_any

    with pytest.raises(UsageError, match="proxy warm-up is defined for students"):
        project(load_generator_any(EMBEDDED_TEACHER, "cpu"), target, ProjectOptions(proxy_steps=5))


def test_the_proxy_is_anchored_to_the_full_render(student, target):
    """At each refresh the proxy's image plus its anchor is the full render at the proxy's resolution (the anchor is
    their difference); between refreshes the loss is the proxy's image plus that anchor, against the target."""
    from mobilestylegan.edit.project import _Loss
    from mobilestylegan.nets.resize import area_downsample
    from teacher.numerics import assert_parity

    opts = ProjectOptions(steps=8, proxy_steps=6, proxy_refresh=3, proxy_resolution=16)
    loss = _Loss(student, target, opts, None, None)
    g = torch.Generator().manual_seed(3)
    ws = student.mapping.w_avg.expand(1, student.num_ws, -1) + 0.3 * torch.randn(
        1, student.num_ws, student.w_dim, generator=g
    )
    moved = ws + 0.05 * torch.randn(ws.shape, generator=g)
    goal = (area_downsample(target, 16) + 1) / 2

    def full(w: torch.Tensor) -> torch.Tensor:
        return area_downsample(student.synthesis(w, noise_mode="const"), 16)

    with torch.no_grad():
        value, phase = loss(0, ws, None)
        assert phase == "proxy"
        assert_parity(loss.proxy(ws, None) + loss.anchor, full(ws), "anchored proxy at a refresh")
        anchor = loss.anchor.clone()
        between, _ = loss(1, moved, None)  # not a refresh: the moved latent's proxy image plus the old anchor
        assert torch.equal(loss.anchor, anchor)
        assert torch.allclose(between, F.mse_loss((loss.proxy(moved, None) + anchor + 1) / 2, goal))
        assert not torch.allclose(loss.proxy(moved, None) + anchor, full(moved), atol=1e-3)  # the anchor is stale
        loss(3, moved, None)  # a refresh: anchored to the moved latent's full render
        assert_parity(loss.proxy(moved, None) + loss.anchor, full(moved), "anchored proxy after a refresh")
        assert loss(6, moved, None)[1] == "full"


def test_wplus_starts_with_a_shared_w(student, target):
    """In W+ the first w_steps optimise one w (every entry equal), the rest each live entry; None is a third."""
    tied = project(student, target, ProjectOptions(space="wplus", steps=6, w_steps=6, w_avg_samples=500))
    assert torch.equal(tied.ws, tied.ws[:, :1].expand_as(tied.ws))
    split = project(student, target, ProjectOptions(space="wplus", steps=6, w_steps=3, w_avg_samples=500))
    assert len({tuple(split.ws[0, i].tolist()) for i in split.live}) == len(split.live)
    assert ProjectOptions(space="wplus", steps=90).shared_w_steps == 30
    assert ProjectOptions(space="w", steps=90).shared_w_steps == 0
    with pytest.raises(UsageError, match="w steps must be within 0..steps"):
        ProjectOptions(space="wplus", steps=5, w_steps=6).check(student)


def test_cli_writes_every_file_and_latents_load_back(student, target, tmp_path):
    ckpt = save_student(tmp_path / "student.pt", student)
    png = save_png(to_uint8(target)[0], tmp_path / "face.png")
    out = tmp_path / "proj"
    assert (
        project_main(
            [
                str(png),
                "--generator",
                str(ckpt),
                "--steps",
                "40",
                "--lr",
                "0.1",
                "--optimize-noise",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "face.json",
        "face.npy",
        "face.png",
        "face_loss.png",
        "face_noise.npz",
        "face_strip.png",
        "projections.jsonl",
    ]
    line = json.loads((out / "projections.jsonl").read_text().splitlines()[-1])
    assert line["steps"] == 40 and line["space"] == "wplus" and line["psnr_db"] > 15 and line["seconds"] > 0
    desc = json.loads((out / "face.json").read_text())
    assert desc["generator_hash"] == generator_hash(student) and desc["num_ws"] == student.num_ws
    ws = load_latent(out / "face.npy", student)
    assert ws.shape == (1, student.num_ws, student.w_dim)
    with np.load(out / "face_noise.npz") as noise:
        assert [noise[f"noise{i}"].shape for i in range(len(noise.files))] == [
            (1, *s) for s in student.synthesis.noise_shapes
        ]
    from PIL import Image

    strip = np.asarray(Image.open(out / "face_strip.png"))
    assert strip.shape == (64, 3 * 64, 3)


def test_latent_file_errors(student, tmp_path):
    with pytest.raises(UsageError, match=r"shape \[3, 7\]; this generator takes"):
        np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
        load_latent(tmp_path / "bad.npy", student)
    other = export_student(res=64, channels=(32, 32, 32, 16), seed=1)
    save_latent(tmp_path / "mine.npy", torch.zeros(1, student.num_ws, student.w_dim), student, {})
    with pytest.raises(UsageError, match="projected with another generator"):
        load_latent(tmp_path / "mine.npy", other)
    assert load_latent(tmp_path / "mine.npy", other, check_hash=False).shape == (1, other.num_ws, other.w_dim)
    w = np.zeros((1, student.w_dim), np.float32)  # a plain w is broadcast to W+
    np.save(tmp_path / "w.npy", w)
    assert load_latent(tmp_path / "w.npy", student).shape == (1, student.num_ws, student.w_dim)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert (
        project_main([str(tmp_path / "missing.png"), "--generator", "embedded:tiny64", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "missing.png does not exist" in err and "Traceback" not in err
    (tmp_path / "not.png").write_text("text")
    bad = tmp_path / "not.png"
    assert project_main([str(bad), "--generator", "embedded:tiny64", "--out", str(tmp_path / "o")]) == 2
    assert "not an image" in capsys.readouterr().err


def test_commands_rerun_with_the_raised_mmap_threshold():
    """Started as a command on glibc, project/edit run again once with GLIBC_TUNABLES set (in-process calls with an
    argv list, as here, never re-run); MOBILESTYLEGAN_ALLOCATOR=default opts out."""
    import os
    import platform
    import subprocess
    import sys

    from mobilestylegan.allocator import MMAP_TUNABLE

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = (
        "import os; print(os.environ.get('GLIBC_TUNABLES', '-'), flush=True); "
        "from mobilestylegan.cli.common import raise_mmap_threshold; raise_mmap_threshold(None); print('ran')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MOBILESTYLEGAN_ALLOCATOR")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["-", MMAP_TUNABLE, "ran"]
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, MOBILESTYLEGAN_ALLOCATOR="default"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["-", "ran"]


def test_mmap_tunable_is_added_after_existing_tunables():
    from mobilestylegan.allocator import MMAP_TUNABLE, with_mmap_tunable

    assert with_mmap_tunable({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": MMAP_TUNABLE}
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert with_mmap_tunable(env)["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{MMAP_TUNABLE}"
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}  # a copy: the given mapping is left alone


def test_images_are_compared_at_the_smaller_resolution():
    """The larger batch is box-averaged to the smaller one's side, then PSNR; equal sides are left as they are."""
    from mobilestylegan.nets.resize import area_downsample, compare_at_smaller_resolution
    from teacher.numerics import psnr_db

    g = torch.Generator().manual_seed(0)
    big, small = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    a, b, psnr = compare_at_smaller_resolution(big, small)
    boxed = big.reshape(2, 3, 4, 2, 4, 2).mean((3, 5))
    torch.testing.assert_close(a, boxed)
    torch.testing.assert_close(area_downsample(big, 4), boxed)
    assert b is small and torch.equal(psnr, psnr_db(a, small))
    assert area_downsample(small, 8) is small and area_downsample(small, 4) is small
