"""The latent encoder: architecture, data-free training (learning, resume, the pool on disk), the encoder file and its
errors, and projection started from it (``mobilestylegan-project --init``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilestylegan.distill.encoder_augment import PhotoAugment
from mobilestylegan.distill.triples import sample_generator
from mobilestylegan.edit.encoder import load_encoder
from mobilestylegan.errors import UsageError
from mobilestylegan.io.latent_space import generator_hash, live_ws, mapped_w
from mobilestylegan.io.load import load_generator_any, resolve_source
from mobilestylegan.nets.encoder import EncoderConfig, LatentEncoder
from mobilestylegan.nets.encoder_file import read_encoder, save_encoder
from mobilestylegan.nets.resize import area_downsample
from teacher.formats.common import CheckpointError
from teacher.numerics import psnr_db
from tests.helpers.config import compose_cfg
from tests.helpers.students import tiny_student

TINY = resolve_source("embedded:tiny64")


def train_encoder(out: Path, *extra: str):
    train, cfg = compose_cfg(["experiment=encoder_tiny", *extra])
    return train.train(cfg, out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny experiment as configured (60 steps of a tiny encoder for the bundled 64-px teacher)."""
    out = tmp_path_factory.mktemp("encoder")
    summary, objects = train_encoder(out)
    return out, summary, objects


def test_only_live_entries_are_predicted():
    G = tiny_student(64)
    live = live_ws(G)
    assert 0 < len(live) < G.num_ws  # a student reads a subset of its W+
    enc = LatentEncoder(
        EncoderConfig(G.num_ws, G.w_dim, tuple(live), input_size=32, channels=(8, 8, 8), hidden=16, offset_rank=8)
    )
    torch.nn.init.normal_(enc.offsets.weight)  # make the entries differ
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    assert enc(img, whitened=True).shape == (2, len(live), G.w_dim)
    ws = enc(img)
    assert ws.shape == (2, G.num_ws, G.w_dim)
    for i in range(G.num_ws):  # a dead entry repeats the nearest live entry below it
        src = max(k for k in live if k <= i) if i >= live[0] else live[0]
        assert torch.equal(ws[:, i], ws[:, src])
    assert not torch.equal(ws[:, live[0]], ws[:, live[1]])
    # Another image size is resized in the graph.
    assert enc(torch.zeros(1, 3, 64, 64)).shape == (1, G.num_ws, G.w_dim)


def test_whitening_is_the_inverse_of_the_colouring():
    G = load_generator_any(TINY, "cpu")
    w = mapped_w(G, 4000, seed=1)
    enc = LatentEncoder(
        EncoderConfig(G.num_ws, G.w_dim, tuple(range(G.num_ws)), input_size=16, channels=(8, 8), offset_rank=8)
    )
    enc.set_statistics(w)
    u = enc.whiten(w)
    cov = torch.cov(u.T)
    # float32 buffers, 4000 samples: the whitened covariance is the identity up to the buffers' rounding
    assert torch.allclose(u.mean(0), torch.zeros(G.w_dim, dtype=u.dtype), atol=1e-4)
    assert torch.allclose(cov, torch.eye(G.w_dim, dtype=cov.dtype), atol=1e-3)
    back = u.float() @ enc.colour + enc.w_mean
    assert torch.allclose(back.double(), w, atol=1e-4 * float(w.abs().max()))


def test_augment_is_per_sample_and_seeded():
    img = torch.rand(3, 3, 32, 32) * 2 - 1
    aug = PhotoAugment(p=1.0)
    gens = lambda: [sample_generator(0, 5, i, 13) for i in range(3)]  # noqa: E731
    a, b = aug(img, gens()), aug(img, gens())
    assert torch.equal(a, b) and a.shape == img.shape and float(a.abs().max()) <= 1
    # sample 1 alone, augmented with its own stream, is the same as inside the batch
    assert torch.equal(aug.one(img[1:2], sample_generator(0, 5, 1, 13)), a[1:2])
    assert not torch.allclose(a, img, atol=0.05)
    same = PhotoAugment(p=0.0, rotate=0, scale=0, shift=0)(img, gens())
    assert torch.allclose(same, img, atol=1e-6)


def test_background_replaces_only_what_lies_outside_the_face():
    img = torch.rand(4, 3, 64, 64) * 2 - 1
    gens = lambda: [sample_generator(0, 2, i, 13) for i in range(4)]  # noqa: E731
    out = PhotoAugment(p=0.0, rotate=0, scale=0, shift=0, background=1.0)(img, gens())
    # x 0.35..0.65, y 0.30..0.60 of the side lies inside the smallest drawn ellipse, short of its feather: kept as is
    assert torch.equal(out[..., 19:38, 22:42], img[..., 19:38, 22:42])
    # a corner lies outside the largest: a backdrop, the same whatever the image
    other = PhotoAugment(p=0.0, rotate=0, scale=0, shift=0, background=1.0)(-img, gens())
    assert torch.equal(out[..., :6, :6], other[..., :6, :6]) and not torch.allclose(out[..., :6, :6], img[..., :6, :6])
    assert float(out.abs().max()) <= 1
    # with the other augmentations, still per sample and seeded; background 0 leaves the image's pixels to them
    aug = PhotoAugment(p=1.0, background=0.5)
    a = aug(img, gens())
    assert torch.equal(aug.one(img[2:3], sample_generator(0, 2, 2, 13)), a[2:3])
    with pytest.raises(ValueError, match="background"):
        PhotoAugment(background=1.5)


def test_tiny_encoder_learns_and_writes_its_files(trained):
    out, summary, objects = trained
    saved = json.loads((out / "summary.json").read_text())
    assert saved["steps"] == 60 and [h["iteration"] for h in saved["val_history"]] == [0, 30, 60]
    assert saved["val_psnr_last"] > saved["val_psnr_first"] + 1.0  # it learns
    assert saved["val_psnr_last"] > saved["baseline_psnr"] + 1.0  # and beats the mean latent
    assert saved["val_latent_last"] < saved["val_history"][0]["val/latent"]
    assert (out / "val" / "latest.png").is_file() and Path(saved["last_checkpoint"]).is_file()
    # Recomputed here on faces neither the pool nor the validation set holds: the saved encoder's latents render
    # closer to the faces than the mean latent does.
    G = load_generator_any(TINY, "cpu")
    enc = load_encoder(out / "encoder.safetensors", G)
    assert enc.generator_hash == generator_hash(G) == saved["generator_hash"]
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(777))
    with torch.no_grad():
        faces = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")
        target = area_downsample(faces, 32)
        photo = (((target + 1) * 127.5).round().clamp(0, 255) / 127.5) - 1
        enc_faces = G.synthesis(enc(photo), noise_mode="const")
        mean = G.synthesis(enc.w_mean.expand(16, G.num_ws, -1), noise_mode="const")
    gain = psnr_db(enc_faces, faces).mean() - psnr_db(mean, faces).mean()
    assert gain > 1.0, float(gain)
    # The file holds exactly the validated (EMA) encoder of the run.
    module = objects["module"]
    with torch.no_grad():
        assert torch.equal(enc(photo), module.validated.cpu().eval()(photo))


def student_on_the_tiny_mapping(path: Path) -> Path:
    """A freshly initialised 64-px student around the bundled tiny teacher's mapping (a W that spreads like a real
    one), seeded."""
    import copy

    from mobilestylegan.io.checkpoint import save_student
    from mobilestylegan.student.generator import StudentGenerator
    from mobilestylegan.student.synthesis import StudentConfig
    from tests.helpers.teachers import randomize

    T = load_generator_any(TINY, "cpu")
    G = StudentGenerator(
        StudentConfig(img_resolution=64, w_dim=T.w_dim, channels=(16, 16, 16, 16)), copy.deepcopy(T.mapping)
    )
    randomize(G.synthesis, seed=6)
    save_student(path, G)
    return path


def test_exact_resume_and_the_pool_on_disk(tmp_path):
    """A run killed at iteration 4 and resumed reaches the same losses as an uninterrupted one (the image loss
    included); the pool is rendered once and found again."""
    student = student_on_the_tiny_mapping(tmp_path / "student.pt")
    common = [
        "trainer.val_every=4",
        "trainer.checkpoint_every=4",
        "encoder.pool_size=64",
        "encoder.val_size=4",
        f"encoder.generator={student}",
        "encoder.image_weight=10",
        "encoder.image_resolution=16",
        "encoder.image_fit=32",
        "encoder.image_samples=6",
    ]
    full, _ = train_encoder(tmp_path / "full", "trainer.steps=8", *common)
    part, objs = train_encoder(tmp_path / "part", "trainer.steps=4", *common)
    assert part["steps"] == 4 and objs["pool"].rendered == 64
    resumed, objs = train_encoder(tmp_path / "part", "trainer.steps=8", *common)
    assert resumed["steps"] == 8 and objs["pool"].rendered == 0  # the pool came from disk
    assert torch.equal(objs["pool"].images, _["pool"].images)
    assert set(full["final_losses"]) == {"latent", "image", "total"}
    for k, v in full["final_losses"].items():
        assert abs(v - resumed["final_losses"][k]) <= 1e-5 * max(1.0, abs(v)), (k, v, resumed["final_losses"][k])
    assert resumed["val_psnr_first"] == full["val_psnr_first"]
    assert full["image_loss"]["resolution"] == 32 and full["image_loss"]["fit_samples"] == 32


def test_coarse_render_stands_in_for_the_coarse_image():
    """On the published student: fitted on 12 latents' faces, the coarse render (its 16-px features, a linear map to
    32 px) reproduces 6 held-out faces at 32 px better than their mean image does; differentiable in the latent."""
    from mobilestylegan.distill.encoder_proxy import CoarseRender

    G = load_generator_any("ffhq-1024", "cpu").float().eval()
    ws = G.mapping(torch.randn(18, G.z_dim, generator=torch.Generator().manual_seed(3)), truncation_psi=0.7)
    with torch.no_grad():
        images = torch.cat(
            [
                area_downsample(G.synthesis(ws[i : i + 3], noise_mode="const", inference=True), 64)
                for i in range(0, 18, 3)
            ]
        )
    render = CoarseRender(G.synthesis, 16)
    assert render.fit(ws[:12], images[:12]) > 20
    goal = area_downsample(images[12:], 32)
    with torch.no_grad():
        got = render(ws[12:])
    assert got.shape == (6, 3, 32, 32)
    gain = psnr_db(got, goal).mean() - psnr_db(goal.mean(0, keepdim=True).expand_as(goal), goal).mean()
    assert gain > 3, float(gain)
    x = ws[12:13].clone().requires_grad_(True)
    render(x).square().sum().backward()
    assert float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="must be one of"):
        CoarseRender(G.synthesis, 1024)


def test_encoder_file_errors(trained, tmp_path):
    out, summary, _ = trained
    path = out / "encoder.safetensors"
    # Another generator: one error naming both hashes.
    other = tiny_student(64, w_dim=32)
    with pytest.raises(UsageError, match="trained for embedded:tiny64 .*not this generator"):
        load_encoder(path, other)
    # A wrong-shaped tensor: one error naming it.
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    state["base.weight"] = state["base.weight"][:, :-1].contiguous()
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(UsageError, match=r"wrong shape: base.weight"):
        load_encoder(bad)
    with pytest.raises(CheckpointError, match=r"wrong shape: base.weight"):
        read_encoder(bad)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(UsageError, match="not an encoder file"):
        load_encoder(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(UsageError, match="not a readable"):
        load_encoder(tmp_path / "junk.safetensors")
    with pytest.raises(UsageError, match="no encoder 'nope'"):
        load_encoder("nope")
    # float16 weights load back as float32, within float16's rounding of each weight.
    enc = load_encoder(path)
    half = save_encoder(tmp_path / "half.safetensors", enc, enc.generator_hash, dtype=torch.float16)
    back, desc = read_encoder(half)
    assert desc["dtype"] == "float16" and back.stem.weight.dtype == torch.float32
    w = enc.stem.weight
    assert torch.allclose(back.stem.weight, w, rtol=2**-11, atol=2**-24)
    assert torch.equal(back.colour, enc.colour)  # the whitening stays float32


def _save_face(G, seed: int, path: Path) -> np.ndarray:
    from mobilestylegan.io.images import save_png, to_uint8

    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")
    save_png(to_uint8(img)[0], path)
    return img


def test_project_starts_from_the_encoder(trained, tmp_path, capsys):
    from mobilestylegan.cli.project import main

    out, summary, _ = trained
    G = load_generator_any(TINY, "cpu").eval()
    face = tmp_path / "face.png"
    _save_face(G, 4242, face)
    common = [str(face), "--generator", TINY, "--lpips", "off", "-q"]
    enc_path = str(out / "encoder.safetensors")
    assert main([*common, "--encoder", enc_path, "--steps", "0", "--out", str(tmp_path / "e0")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["init"] == "encoder" and line["steps"] == 0
    for name in ("face.png", "face.npy", "face.json", "face_strip.png", "face_loss.png"):
        assert (tmp_path / "e0" / name).is_file(), name
    # --steps 0 writes the encoder's own latent.
    enc = load_encoder(enc_path, G)
    from mobilestylegan.edit.latents import load_latent
    from mobilestylegan.edit.target_images import load_target

    target = load_target(face, G.img_resolution).image
    with torch.no_grad():
        want = enc(target)
    assert torch.allclose(load_latent(tmp_path / "e0" / "face.npy", G), want, atol=1e-6)
    assert main([*common, "--init", "mean", "--steps", "0", "--out", str(tmp_path / "m0")]) == 0
    mean_line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        mean_line["init"] == "mean" and line["psnr_db"] > mean_line["psnr_db"]
    )  # one face; the 16-face margin is tested above
    # A few refinement steps from the encoder's start improve on it.
    assert main([*common, "--encoder", enc_path, "--steps", "20", "--out", str(tmp_path / "e20")]) == 0
    refined = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert refined["init"] == "encoder" and refined["psnr_db"] > line["psnr_db"]


def test_project_nearest_and_the_start_errors(trained, tmp_path, capsys, monkeypatch):
    from mobilestylegan.cli.project import main
    from mobilestylegan.edit.encoder import nearest_bank

    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "cache"))
    out, summary, _ = trained
    G = load_generator_any(TINY, "cpu").eval()
    face = tmp_path / "face.png"
    _save_face(G, 99, face)
    common = [str(face), "--generator", TINY, "--lpips", "off", "-q", "--steps", "0"]
    assert main([*common, "--init", "nearest", "--nearest-faces", "64", "--out", str(tmp_path / "n")]) == 0
    near = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert near["init"] == "nearest"
    w, feats = nearest_bank(G, 64)  # cached by the command: the same bank
    assert w.shape == (64, G.w_dim) and feats.shape == (64, 3 * 32 * 32)
    assert len(list((tmp_path / "cache" / "nearest").glob("*.npz"))) == 1
    assert main([*common, "--init", "mean", "--out", str(tmp_path / "m")]) == 0
    mean = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert near["psnr_db"] > mean["psnr_db"]
    # No encoder for this generator: the default is the mean, with a note; --init encoder is an error.
    assert main([*common, "--out", str(tmp_path / "d")]) == 0
    assert "no encoder for this generator" in capsys.readouterr().err
    assert main([*common, "--init", "encoder", "--out", str(tmp_path / "x")]) == 2
    assert "no encoder ships for this generator" in capsys.readouterr().err
    # An encoder of another generator: one line, exit 2.
    other = tmp_path / "other.pt"
    from mobilestylegan.io.checkpoint import save_student

    save_student(other, tiny_student(64, w_dim=32))
    enc_path = str(out / "encoder.safetensors")
    code = main(
        [str(face), "--generator", str(other), "--encoder", enc_path, "--steps", "0", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "trained for embedded:tiny64" in err and err.count("\n") == 1


def test_fast_dev_run_of_the_ffhq_encoder_experiment(tmp_path):
    """The shipped encoder's experiment as configured (the published student, its architecture and optimiser), one
    step on a pool of 2 faces rendered by the PyTorch student (the OpenVINO renderer is the real run's)."""
    train, cfg = compose_cfg(
        [
            "experiment=encoder_ffhq1024",
            "encoder.pool_size=2",
            "encoder.batch_size=2",
            "encoder.val_size=2",
            "encoder.stats_samples=64",
            "encoder.renderer=null",
            "trainer.fast_dev_run=true",
            "trainer.progress_bar=false",
        ]
    )
    summary, objects = train.train(cfg, tmp_path)
    assert summary["steps"] == 1 and summary["val_resolution"] == 256
    enc = load_encoder(tmp_path / "encoder.safetensors", objects["generator"])
    assert enc.cfg.input_size == 128 and len(enc.cfg.live) == 16  # the fused published student reads 16 of 23
    assert summary["encoder_bytes"] < 20 * 2**20  # float16 weights: within the 20 MB the repository allows


def test_projection_from_a_start_latent_keeps_snapshots():
    """``init`` is where the steps start (each live entry on its own), ``keep`` records the W+ after those steps."""
    from mobilestylegan.edit.project import ProjectOptions, project

    G = tiny_student(64, w_dim=32)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim)), noise_mode="const")
    start = G.mapping.w_avg[None, None].expand(1, G.num_ws, -1) + 0.01 * torch.randn(1, G.num_ws, G.w_dim)
    start = start[
        :, [max(k for k in live_ws(G) if k <= i) if i >= live_ws(G)[0] else live_ws(G)[0] for i in range(G.num_ws)]
    ]
    r = project(G, target, ProjectOptions(steps=4, w_avg_samples=200), init=start, keep=[0, 2, 4])
    assert sorted(r.snapshots) == [0, 2, 4] and r.init == "latent"
    assert torch.equal(r.snapshots[0], start) and torch.equal(r.snapshots[4], r.ws)
    assert r.snapshot_seconds[0] <= r.snapshot_seconds[2] <= r.snapshot_seconds[4] <= r.seconds
    zero = project(G, target, ProjectOptions(steps=0, w_avg_samples=200), init=start)
    assert zero.steps_done == 0 and torch.equal(zero.ws, start)
    with pytest.raises(UsageError, match="start latent must be"):
        project(G, target, ProjectOptions(steps=1, w_avg_samples=200), init=start[:, :3])


def test_the_shipped_ffhq_encoder():
    """The encoder in the repository: ffhq-1024's, under 20 MB, bound to the published student by hash and chosen for
    it by default; on 4 seeds no training stream draws (psi 0.7) its latents render closer to the faces than the mean
    latent's, at 256 px, by several dB (19 dB against 12.8 on the 64 validation faces)."""
    from mobilestylegan.edit.encoder import ASSETS, SHIPPED, shipped_encoder_for
    from mobilestylegan.edit.latents import seeded_w

    G = load_generator_any("ffhq-1024", "cpu").float().eval()
    assert shipped_encoder_for(G) == "ffhq-1024"
    assert (ASSETS / SHIPPED["ffhq-1024"].file).stat().st_size < 20 * 2**20
    enc = load_encoder("ffhq-1024", G)
    assert enc.generator_hash == SHIPPED["ffhq-1024"].generator_hash and len(enc.cfg.live) == 16
    with torch.no_grad():
        faces = torch.cat(
            [G.synthesis(w[None], noise_mode="const") for w in seeded_w(G, [910000 + i for i in range(4)], 0.7)]
        )
        ws = enc(area_downsample(faces, 128))
        mean = G.mapping.w_avg[None, None].expand(1, G.num_ws, -1)
        ours = torch.cat([G.synthesis(w[None], noise_mode="const") for w in ws])
        base = G.synthesis(mean, noise_mode="const")
    goal = area_downsample(faces, 256)
    gain = (
        psnr_db(area_downsample(ours, 256), goal).mean()
        - psnr_db(area_downsample(base, 256).expand_as(goal), goal).mean()
    )
    assert gain > 3, float(gain)
    with pytest.raises(UsageError, match="trained for ffhq-1024"):
        load_encoder("ffhq-1024", tiny_student(64, w_dim=512))
