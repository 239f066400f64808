"""mobilestylegan-generate on tiny models: files, grids, mixing, interpolation, comparison, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mobilestylegan.cli.generate import main
from mobilestylegan.io.checkpoint import save_student
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import StudentConfig
from tests.helpers.teachers import tiny_teacher_student_pair


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    _, mapping = tiny_teacher_student_pair(d)
    S32 = StudentGenerator(StudentConfig(img_resolution=32, w_dim=32, channels=(16, 16, 8)), mapping)
    save_student(d / "student32.pt", S32)
    S128 = StudentGenerator(StudentConfig(img_resolution=128, w_dim=32, channels=(16, 16, 16, 8, 8)), mapping)
    save_student(d / "student128.pt", S128)
    return d


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_seeds_and_grid(models, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([str(models / "student.pt"), "--seeds", "0-2,7", "--outdir", str(out), "--trunc", "0.7"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    assert png(out / "seed0007.png").shape == (64, 64, 3)
    assert png(out / "grid.png").shape == (2 + 2 * 66, 2 + 2 * 66, 3)
    # Seeds are batch-independent: seed 7 alone renders the same picture.
    assert (
        main(
            [str(models / "student.pt"), "--seeds", "7", "--outdir", str(tmp_path / "p"), "--no-grid", "--trunc", "0.7"]
        )
        == 0
    )
    assert np.array_equal(png(tmp_path / "p" / "seed0007.png"), png(out / "seed0007.png"))
    assert "wrote" in capsys.readouterr().out


def test_teacher_source_style_mix_and_interpolation(models, tmp_path):
    out = tmp_path / "t"
    assert (
        main(
            [
                str(models / "teacher.pt"),
                "--style-mix",
                "1,2",
                "--style-mix-cols",
                "3,4,5",
                "--outdir",
                str(out),
                "--interpolate",
                "1,2",
                "--steps",
                "5",
            ]
        )
        == 0
    )
    mix = png(out / "style_mix.png")
    assert mix.shape == (2 + 3 * 66, 2 + 4 * 66, 3)
    strip = png(out / "interp_1_2.png")
    assert strip.shape == (2 + 66, 2 + 5 * 66, 3)
    tile = lambda a, r, c: a[2 + r * 66 : 2 + r * 66 + 64, 2 + c * 66 : 2 + c * 66 + 64]  # noqa: E731
    assert tile(mix, 0, 0).min() == 255  # blank corner
    assert not np.array_equal(tile(strip, 0, 0), tile(strip, 0, 4))
    assert main([str(models / "teacher.pt"), "--seeds", "1", "--outdir", str(tmp_path / "one"), "--no-grid"]) == 0
    assert np.array_equal(tile(strip, 0, 0), png(tmp_path / "one" / "seed0001.png"))  # endpoint = seed 1


def test_compare(models, tmp_path, capsys):
    out = tmp_path / "c"
    assert (
        main(
            [
                str(models / "student.pt"),
                "--compare",
                str(models / "teacher.pt"),
                "--seeds",
                "0-2",
                "--outdir",
                str(out),
            ]
        )
        == 0
    )
    assert png(out / "compare.png").shape == (2 + 3 * 66, 2 + 3 * 66, 3)
    assert "PSNR" in capsys.readouterr().out
    # A smaller student is compared against the teacher downsampled to its size.
    assert (
        main(
            [
                str(models / "student32.pt"),
                "--compare",
                str(models / "teacher.pt"),
                "--seeds",
                "0",
                "--outdir",
                str(out),
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "argv,match",
    [
        (["missing.pt"], "neither a file nor a pretrained name"),
        (["{student}", "--seeds", "-1"], "seeds must be >= 0"),
        (["{student}", "--seeds", "5-2"], "runs backwards"),
        (["{student}", "--batch-size", "0"], "batch-size must be >= 1"),
        (["{student128}", "--compare", "{teacher}"], "less than the student"),
        (["{teacher}", "--compare", "{teacher}"], "needs a student SOURCE"),
        (["{student}", "--compare", "nope.pt"], "does not exist"),
        (["{student}", "--style-mix", "1", "--style-mix-cutoff", "99"], "style-mix-cutoff must be in"),
        (["{student}", "--interpolate", "1,2,3"], "two seeds"),
        (["{student}", "--outdir", "{file}/sub"], "cannot create output directory"),
    ],
)
def test_bad_arguments_give_one_clear_message(models, tmp_path, capsys, argv, match):
    (tmp_path / "afile").write_text("x")
    fill = {
        "student": models / "student.pt",
        "student128": models / "student128.pt",
        "teacher": models / "teacher.pt",
        "file": tmp_path / "afile",
    }
    argv = [a.format(**fill) for a in argv]
    if "--outdir" not in argv:
        argv += ["--outdir", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1
