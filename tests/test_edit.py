"""Edit directions and mobilestylegan-edit on a tiny teacher/student pair that share their mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mobilestylegan.cli.edit import main as edit_main
from mobilestylegan.edit import directions as D
from mobilestylegan.errors import UsageError
from mobilestylegan.io.load import load_generator_any
from mobilestylegan.student.routing import student_ws_resolution, teacher_ws_resolution
from tests.helpers.teachers import tiny_teacher_student_pair


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Directions are cached under the toolkit's cache: a folder of each test's own."""
    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    tiny_teacher_student_pair(d)
    return d, load_generator_any(str(d / "teacher.pt"), "cpu"), load_generator_any(str(d / "student.pt"), "cpu")


def test_ganspace_is_deterministic_orthonormal_and_ordered(pair):
    _, T, S = pair
    dirs, sigmas = D.compute(S, "ganspace", k=6, samples=4000)
    again, _ = D.compute(S, "ganspace", k=6, samples=4000)
    assert torch.equal(dirs, again) and dirs.shape == (6, S.w_dim)
    assert torch.allclose(dirs @ dirs.T, torch.eye(6), atol=1e-5)  # orthonormal principal axes
    assert (sigmas[:-1] >= sigmas[1:]).all() and (sigmas > 0).all()
    # The student shares the teacher's mapping: the same W space, the same principal directions.
    t_dirs, _ = D.compute(T, "ganspace", k=6, samples=4000)
    assert torch.equal(t_dirs, dirs)
    # sigma is the spread of mapped latents along each direction.
    w = D.mapped_w(S, 4000)
    assert torch.allclose(((w - w.mean(0)) @ dirs.double().T).std(0).float(), sigmas, rtol=1e-5)


def test_weighted_sefa_keeps_to_where_w_varies(pair):
    _, _, S = pair
    dirs, sigmas = D.compute(S, "sefa", k=4, samples=4000)
    assert torch.allclose(dirs.norm(dim=1), torch.ones(4), atol=1e-6)
    plain, plain_sigmas = D.compute(S, "sefa", k=4, samples=4000, weighted=False)
    assert torch.equal(D.compute(S, "sefa", k=4, samples=4000)[0], dirs)  # deterministic
    # Weighting by the covariance of w favours directions along which mapped latents spread.
    assert sigmas[0] > plain_sigmas[0]
    A = D.style_affines(S)
    n_channels = sum(
        m.out_features
        for name, m in S.synthesis.named_modules()
        if name.endswith(".modulation")
        and not name.startswith("to_img1")
        and not any(name.startswith(f"layers.{i}.to_img") for i in range(len(S.synthesis.layers) - 1))
    )
    assert A.shape == (n_channels, S.w_dim)


def test_directions_are_cached_by_the_generator_hash(pair, own_cache):
    from mobilestylegan.io.latent_space import generator_hash

    _, _, S = pair
    first = D.resolve("sefa:2", S)
    files = list((own_cache / "directions").iterdir())
    assert [f.name for f in files] == [f"{generator_hash(S)}-sefa-10.npz"]
    with np.load(files[0]) as f:
        assert np.array_equal(f["directions"][2], first.vector.numpy()) and f["sigmas"][2] == np.float32(first.sigma)
    again = D.resolve("sefa:2", S)
    assert torch.equal(again.vector, first.vector) and again.sigma == first.sigma


def test_layer_ranges_map_through_the_routing_table(pair):
    _, T, S = pair
    for a, b in [(0, 0), (0, 3), (2, 5), (0, T.num_ws - 1)]:
        res = {teacher_ws_resolution(i) for i in range(a, b + 1)}
        want = [j for j in range(S.num_ws) if student_ws_resolution(j) in res]
        assert D.layer_indices(S, (a, b)) == want and D.layer_indices(T, (a, b)) == list(range(a, b + 1))
    assert D.layer_indices(S, (0, T.num_ws - 1)) == list(range(S.num_ws))  # the whole teacher: the whole student
    assert D.layer_indices(S, None) == list(range(S.num_ws))


def test_direction_files(pair, tmp_path):
    _, _, S = pair
    v = np.arange(1, S.w_dim + 1, dtype=np.float32)
    np.save(tmp_path / "b.npy", np.stack([v, -v]))
    d = D.resolve(str(tmp_path / "b.npy") + ":1", S)
    assert torch.allclose(d.vector, torch.from_numpy(-v / np.linalg.norm(v)), atol=1e-6) and d.sigma > 0
    torch.save(torch.from_numpy(v), tmp_path / "b.pt")
    assert torch.allclose(D.resolve(str(tmp_path / "b.pt"), S).vector, -d.vector, atol=1e-6)
    np.save(tmp_path / "wrong.npy", np.zeros((2, S.w_dim + 1), np.float32))
    for spec, message in [
        (tmp_path / "wrong.npy", "a direction file is"),
        (f"{tmp_path / 'b.npy'}:5", "row 5"),
        (tmp_path / "none.npy", "does not exist"),
        ("ganspace:x", "give the component"),
    ]:
        with pytest.raises(UsageError, match=message):
            D.resolve(str(spec), S)
    np.save(tmp_path / "zero.npy", np.zeros(S.w_dim, np.float32))
    with pytest.raises(UsageError, match="zero or not finite"):
        D.resolve(str(tmp_path / "zero.npy"), S)


def test_apply_moves_only_the_chosen_entries(pair):
    _, _, S = pair
    ws = torch.randn(2, S.num_ws, S.w_dim)
    d = D.Direction(torch.nn.functional.normalize(torch.randn(S.w_dim), dim=0), 0.5, "x")
    out = D.apply(ws, d, 2.0, [1, 4])
    assert torch.allclose(out[:, [1, 4]] - ws[:, [1, 4]], (1.0 * d.vector).expand(2, 2, -1))
    keep = [i for i in range(S.num_ws) if i not in (1, 4)]
    assert torch.equal(out[:, keep], ws[:, keep])


def test_edit_cli_strips_grid_and_teacher_comparison(pair, tmp_path, capsys):
    d, T, S = pair
    out = tmp_path / "edits"
    assert (
        edit_main(
            [
                "--seeds",
                "0-1",
                "--generator",
                str(d / "student.pt"),
                "--compare",
                str(d / "teacher.pt"),
                "--directions-from",
                "compare",
                "--direction",
                "ganspace:0",
                "--strength",
                "-2:2:5",
                "--layers",
                "0-5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "edits.json",
        "grid.png",
        "seed0000_ganspace_0.png",
        "seed0001_ganspace_0.png",
    ]
    report = json.loads((out / "edits.json").read_text())
    assert report["strengths"] == [-2, -1, 0, 1, 2] and report["compare_ws"] == list(range(6))
    for e in report["latents"]:
        assert len(e["psnr_db_student_vs_compare"]) == 5 and e["unedited_psnr_db"] == e["psnr_db_student_vs_compare"][2]
        ids = e["identity_student_vs_compare"]  # None without FaceNet; else per strength a distance or None (no face)
        assert ids is None or (len(ids) == 5 and all(v is None or v >= 0 for v in ids))
    from PIL import Image

    strip = np.asarray(Image.open(out / "seed0000_ganspace_0.png"))
    assert strip.shape == (2 + 2 * (64 + 2), 2 + 5 * (64 + 2), 3)  # student row over teacher row, 5 strengths
    # The strength-0 column is the unedited face: the same pixels for every direction.
    other = tmp_path / "other"
    assert (
        edit_main(
            [
                "--seeds",
                "0",
                "--generator",
                str(d / "student.pt"),
                "--direction",
                "sefa:1",
                "--strength",
                "0",
                "--out",
                str(other),
            ]
        )
        == 0
    )
    first = np.asarray(Image.open(other / "seed0000_sefa_1.png"))[2:66, 2:66]
    assert np.array_equal(first, strip[2:66, 2 + 2 * 66 : 2 * 66 + 66])
    assert edit_main(["--generator", str(d / "student.pt"), "--direction", "ganspace:0", "--out", str(other)]) == 2
    assert "give latent files or --seeds" in capsys.readouterr().err


def test_edit_a_projected_latent_with_its_target_first(pair, tmp_path):
    """project -> edit --show-target: target | projection (strength 0) | edits, at --size pixels."""
    from PIL import Image

    from mobilestylegan.cli.project import main as project_main
    from mobilestylegan.io.images import save_png, to_uint8

    d, _, S = pair
    with torch.no_grad():
        face = S.synthesis(
            S.mapping.embed(torch.randn(1, S.z_dim, generator=torch.Generator().manual_seed(3))), noise_mode="const"
        )
    png = save_png(to_uint8(face)[0], tmp_path / "face.png")
    assert (
        project_main(
            [str(png), "--generator", str(d / "student.pt"), "--steps", "20", "--out", str(tmp_path / "p"), "-q"]
        )
        == 0
    )
    out = tmp_path / "e"
    assert (
        edit_main(
            [
                str(tmp_path / "p" / "face.npy"),
                "--generator",
                str(d / "student.pt"),
                "--direction",
                "ganspace:0",
                "--strength",
                "0,-2,2,4",
                "--show-target",
                "--size",
                "32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    strip = np.asarray(Image.open(out / "face_ganspace_0.png"))
    assert strip.shape == (2 + 34, 2 + 5 * 34, 3)  # target + 4 strengths, 32 px each
    target = np.asarray(Image.open(png).resize((32, 32), Image.BOX))
    assert np.abs(strip[2:34, 2:34].astype(int) - target).max() <= 2  # the first face is the target
    projection = np.asarray(Image.open(tmp_path / "p" / "face.png").resize((32, 32), Image.BOX))
    assert np.abs(strip[2:34, 36:68].astype(int) - projection).max() <= 2  # then the projection itself
    assert (
        edit_main(
            [
                "--seeds",
                "0",
                "--generator",
                str(d / "student.pt"),
                "--direction",
                "ganspace:0",
                "--show-target",
                "--out",
                str(out),
            ]
        )
        == 2
    )
