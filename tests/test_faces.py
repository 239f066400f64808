"""FFHQ alignment and the identity distance: the recipe's geometry exactly (synthetic points, no models), then the
face models on real photos (tests/fixtures/photos), then the projection CLI's --align and identity output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilestylegan.edit import faces
from mobilestylegan.edit.align import align, align_image, ffhq_quad, to_aligned
from mobilestylegan.errors import UsageError
from tests.helpers.toolchains import require_toolchain

PHOTOS = Path(__file__).parent / "fixtures" / "photos"


def _points(eye_l, eye_r, mouth_l, mouth_r) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v, np.float64)
        for k, v in zip(("eye_left", "eye_right", "mouth_left", "mouth_right"), (eye_l, eye_r, mouth_l, mouth_r))
    }


def _similar(points: dict[str, np.ndarray], angle_deg: float, scale: float, shift) -> dict[str, np.ndarray]:
    a = math.radians(angle_deg)
    m = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return {k: m @ v + np.asarray(shift) for k, v in points.items()}


def test_ffhq_quad_puts_the_eyes_at_the_canonical_positions():
    """Level eyes 40 px apart, mouth 40 px below: |x| = max(2 * 40, 1.8 * 40) = 80, centre 4 px below the eyes,
    so at 1024 the eyes land at x = 1024 * (60 / 160) = 384 and 640, y = 1024 * (76 / 160) = 486.4; any rotation,
    scale and shift of the face gives the same aligned positions."""
    pts = _points((100, 100), (140, 100), (105, 140), (135, 140))
    for angle, scale, shift in [(0, 1, (0, 0)), (23, 1.7, (40, -12)), (-61, 0.4, (300, 200))]:
        p = _similar(pts, angle, scale, shift)
        quad = ffhq_quad(p)
        side = np.hypot(*(quad[3] - quad[0]))
        assert side == pytest.approx(160 * scale, rel=1e-12)
        got = to_aligned(np.stack([p["eye_left"], p["eye_right"], p["mouth_left"], p["mouth_right"]]), quad, 1024)
        np.testing.assert_allclose(got, [[384, 486.4], [640, 486.4], [416, 742.4], [608, 742.4]], atol=1e-9)


def _fake_face(points: dict[str, np.ndarray]) -> faces.Face:
    lm = np.zeros((468, 3))
    lm[list(faces.EYE_LEFT), :2] = points["eye_left"]
    lm[list(faces.EYE_RIGHT), :2] = points["eye_right"]
    lm[faces.MOUTH_LEFT, :2], lm[faces.MOUTH_RIGHT, :2] = points["mouth_left"], points["mouth_right"]
    det = faces.Detection(box=np.zeros(4), keypoints=np.zeros((6, 2)), score=1.0)
    return faces.Face(detection=det, landmarks=lm, faces_found=1)


def _blob_centres(img: np.ndarray, n: int) -> np.ndarray:
    """Centroids of the n bright blobs (red channel) of an aligned image, left to right then top to bottom."""
    from scipy import ndimage

    red = img[..., 0].astype(np.float64) - img[..., 1:].mean(-1)
    labels, count = ndimage.label(red > 60)
    assert count == n, f"expected {n} blobs, found {count}"
    c = np.array(ndimage.center_of_mass(np.clip(red, 0, None), labels, range(1, n + 1)))[:, ::-1] + 0.5
    return c[np.lexsort((c[:, 0], np.round(c[:, 1] / 50)))]


@pytest.mark.parametrize("angle, scale, shift", [(17, 1.0, (20, 40)), (-8, 0.6, (-20, 170))])
def test_align_image_resamples_the_photo_where_the_quad_says(angle, scale, shift):
    """Red Gaussian dots at the four points of a tilted face (near the border, so the reflected padding runs too) come
    out of the resampling at the positions to_aligned predicts, within 1 px at 1024."""
    pts = _similar(_points((100, 100), (140, 100), (105, 140), (135, 140)), angle, scale, shift)
    h, w = 260, 320
    yy, xx = np.mgrid[:h, :w] + 0.5  # pixel centres in continuous coordinates
    red = sum(np.exp(-((xx - v[0]) ** 2 + (yy - v[1]) ** 2) / (2 * (1.5 * scale) ** 2)) for v in pts.values())
    im = np.stack([90 + 165 * red, 110 - 90 * red, 130 - 110 * red], -1).clip(0, 255).round().astype(np.uint8)
    out = align_image(im, _fake_face(pts), size=1024)
    assert out.image.shape == (1024, 1024, 3) and out.image.dtype == np.uint8
    want = out.where(np.stack(list(pts.values())))
    got = _blob_centres(out.image, 4)
    want = want[np.lexsort((want[:, 0], np.round(want[:, 1] / 50)))]
    np.testing.assert_allclose(got, want, atol=1.0)


# ------------------------------------------------------------------------------------------ with the models


def _require_faces():
    require_toolchain(faces.landmark_package_installed(), "the face models", faces.INSTALL_HINT)


def _require_identity():
    _require_faces()
    require_toolchain(faces.identity_model_path() is not None, "FaceNet", faces.IDENTITY_INSTALL_HINT)


def _photo(name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def _eyes(face: faces.Face) -> np.ndarray:
    p = face.ffhq_points()
    return np.stack([p["eye_left"], p["eye_right"]])


@pytest.fixture(scope="module")
def astronaut():
    return _photo("astronaut.png")


@pytest.mark.parametrize("variant", ["photo", "turned 15 degrees", "0.7x, turned -10 degrees"])
def test_alignment_puts_the_eyes_at_ffhq_positions_within_2px(astronaut, variant):
    """On a real photo (also turned and shrunk): the landmark model, run again on the 1024 aligned image, finds the
    eye centres within 2 px of where the recipe put them, and those are FFHQ's canonical x = 384 and 640."""
    from PIL import Image

    _require_faces()
    pil = Image.fromarray(astronaut)
    if variant == "turned 15 degrees":
        pil = pil.rotate(15, resample=Image.BICUBIC, expand=True)
    elif variant.startswith("0.7x"):
        pil = pil.resize((358, 358), Image.LANCZOS).rotate(-10, resample=Image.BICUBIC, expand=True)
    a = align(np.asarray(pil))
    want = a.where(_eyes(a.face))
    np.testing.assert_allclose(want[:, 0], [384, 640], atol=0.5)
    again = faces.find_face(a.image)
    err = np.hypot(*(_eyes(again) - want).T)
    assert err.max() <= 2.0, f"eye centres {err} px from the recipe's positions"


def test_no_face_and_several_faces(astronaut):
    _require_faces()
    grey = np.full((300, 400, 3), 128, np.uint8)
    with pytest.raises(UsageError, match="no face found"):
        faces.find_face(grey)
    from PIL import Image

    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS))
    pair = np.full((512, 768, 3), 200, np.uint8)
    pair[:, :512], pair[128:384, 512:] = astronaut, small
    f = faces.find_face(pair)
    assert f.faces_found == 2
    assert _eyes(f)[:, 0].max() < 512  # the larger face, the left one
    alone = faces.find_face(astronaut)
    np.testing.assert_allclose(_eyes(f), _eyes(alone), atol=1.0)


def test_missing_models_say_which_setup_to_run(monkeypatch):
    monkeypatch.setattr(faces, "_package_dir", lambda module: None)
    with pytest.raises(UsageError, match=r"bash scripts/setup.sh --faces"):
        faces.find_face(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(UsageError, match=r"bash scripts/setup.sh --identity"):
        faces.identity_between(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))


def test_identity_distance_tells_people_apart(astronaut):
    """FaceNet's distance: 0 for the same image, small for the mirrored photo aligned on its own, and above the
    same-person threshold between two different people."""
    _require_identity()
    a = align(astronaut).image
    mirrored = align(np.ascontiguousarray(astronaut[:, ::-1])).image
    hopper = align(_photo("grace_hopper.jpg")).image
    box = faces.identity_crop_box(faces.find_face(a))
    e = faces.identity_embedding(a, box)
    assert e.shape == (512,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-6)
    assert faces.identity_distance(a, a, box) == pytest.approx(0.0, abs=1e-6)
    assert faces.identity_between(a, mirrored) < 0.5
    assert faces.identity_between(a, hopper) > 1.0


def test_project_cli_aligns_and_reports_identity(tmp_path, capsys):
    """--align writes FFHQ's crop and projects it; the JSON line says so and carries the identity distance when
    FaceNet is installed (null, with a note, when it is not)."""
    _require_faces()
    from PIL import Image

    from mobilestylegan.cli.project import main as project_main

    out = tmp_path / "proj"
    assert (
        project_main(
            [
                str(PHOTOS / "astronaut.png"),
                "--align",
                "--generator",
                "embedded:tiny64",
                "--steps",
                "3",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    aligned = Image.open(out / "astronaut_aligned.png")
    assert aligned.size == (1024, 1024)
    line = json.loads((out / "projections.jsonl").read_text().splitlines()[-1])
    assert line["aligned"] is True and line["steps"] == 3
    desc = json.loads((out / "astronaut.json").read_text())  # edit --show-target shows the crop that was projected
    assert desc["target"] == str(out / "astronaut_aligned.png") and desc["image"] == str(PHOTOS / "astronaut.png")
    if faces.identity_model_path() is not None:
        # The tiny generator's 64-px render shows no face, so the distance is measured or explained, never silent.
        err = capsys.readouterr().err
        assert line["identity_distance"] is not None or "identity distance not measured" in err


def test_project_cli_align_without_models_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from mobilestylegan.cli.project import main as project_main

    monkeypatch.setattr(faces, "_package_dir", lambda module: None)
    assert (
        project_main(
            [str(PHOTOS / "astronaut.png"), "--align", "--generator", "embedded:tiny64", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bash scripts/setup.sh --faces" in err and "Traceback" not in err


def test_projection_adds_the_perceptual_term():
    """With a perceptual distance the first step's loss grows by exactly its weighted value at the start point."""
    from mobilestylegan.edit.project import ProjectOptions, project, w_statistics
    from mobilestylegan.io.load import load_generator_any
    from mobilestylegan.metrics.measures import PerceptualDistance
    from mobilestylegan.nets.vgg import load_vgg16_full

    G = load_generator_any("embedded:tiny64", "cpu").float().eval()
    with torch.no_grad():
        target = G.synthesis(
            G.mapping.embed(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)))[:, None].expand(
                -1, G.num_ws, -1
            ),
            noise_mode="const",
        )
    vgg, _ = load_vgg16_full(None, allow_random_weights=True, classifier=False)
    perceptual = PerceptualDistance(vgg, None, 64)
    opts = ProjectOptions(steps=1, w_noise=0.0, w_avg_samples=500)
    plain = project(G, target, opts).losses[0]
    opts.perceptual_weight = 0.5
    r = project(G, target, opts, perceptual=perceptual)
    with torch.no_grad():
        w_avg, _ = w_statistics(G, 500)
        start = G.synthesis(w_avg[:, None].expand(-1, G.num_ws, -1), noise_mode="const")
        extra = float(perceptual(start, target)[0])
    assert extra > 0 and r.losses[0] == pytest.approx(plain + 0.5 * extra, rel=1e-4)


def _small_ov_model(extra_sigmoid: bool = False):
    """NHWC input -> every op OVGraph replays: same-padded strided conv, bias, ReLU, padded max / average pooling,
    concat, reshape, matmul, and an L2 normalisation written as FaceNet's graph writes it."""
    import openvino as ov
    import openvino.opset13 as op

    rng = np.random.default_rng(0)
    c = lambda *s: op.constant(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    x = op.parameter([1, 11, 11, 3], np.float32, name="x")
    t = op.transpose(x, op.constant(np.array([0, 3, 1, 2], np.int64)))
    a = op.relu(
        op.add(op.convolution(t, c(4, 3, 3, 3), [2, 2], [0, 0], [0, 0], [1, 1], auto_pad="same_upper"), c(1, 4, 1, 1))
    )
    b = op.convolution(t, c(4, 3, 1, 1), [2, 2], [0, 0], [0, 0], [1, 1])
    y = op.concat([a, op.multiply(b, c(1, 4, 1, 1))], 1)
    y = op.max_pool(y, [1, 1], [1, 1], [1, 1], [1, 1], [3, 3]).output(0)
    y = op.avg_pool(y, [2, 2], [0, 0], [0, 0], [2, 2], exclude_pad=True)
    y = op.reshape(y, op.constant(np.array([0, -1], np.int64)), special_zero=True)
    y = op.subtract(op.matmul(y, c(8 * 3 * 3, 5), False, False), c(1, 5))
    norm = op.power(
        op.maximum(
            op.reduce_sum(op.multiply(y, y), op.constant(np.array([1], np.int64)), True), op.constant(np.float32(1e-10))
        ),
        op.constant(np.float32(0.5)),
    )
    y = op.divide(y, norm)
    if extra_sigmoid:
        y = op.sigmoid(y)
    return ov.Model([y], [x], "small")


def test_ov_graph_replays_openvino_in_torch_with_gradients():
    import openvino as ov

    from mobilestylegan.nets.ov_torch import OVGraph
    from teacher.numerics import assert_parity

    model = _small_ov_model()
    x = np.random.default_rng(1).standard_normal((1, 11, 11, 3)).astype(np.float32)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref = np.asarray(compiled(x)[compiled.outputs[0]])
    g = OVGraph(model)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = g(xt)
    assert out.shape == (1, 5)
    assert_parity(out.detach(), ref, "OVGraph vs OpenVINO")
    out[0, 0].backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="cannot replay these OpenVINO ops: Sigmoid"):
        OVGraph(_small_ov_model(extra_sigmoid=True))


def test_identity_loss_is_facenet_in_torch(astronaut):
    """The differentiable identity term: FaceNet replayed in torch equals OpenVINO's FaceNet, the loss is 0 on the
    target itself, sqrt(2 * loss) is the identity distance up to the crops' resampling, and gradients reach the
    render."""
    _require_identity()
    from teacher.numerics import assert_parity

    x = np.random.default_rng(0).standard_normal((1, 160, 160, 3)).astype(np.float32)
    (ref,) = faces._run(faces.identity_model_path(), x)
    assert_parity(faces.identity_network()(torch.from_numpy(x)), ref, "FaceNet in torch vs OpenVINO")
    a = align(astronaut).image
    hopper = align(_photo("grace_hopper.jpg")).image
    loss = faces.IdentityLoss(a)
    as_t = lambda u: torch.from_numpy(u.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]  # noqa: E731
    assert float(loss(as_t(a))) == pytest.approx(0.0, abs=1e-6)
    render = as_t(hopper).requires_grad_(True)
    value = loss(render)
    value.backward()
    assert math.sqrt(2 * float(value)) == pytest.approx(faces.identity_distance(a, hopper, loss.box), abs=0.05)
    assert float(render.grad.abs().sum()) > 0


def test_project_cli_no_face_and_identity_weight_errors(tmp_path, capsys, monkeypatch):
    """A photo without a face, and --identity-weight without FaceNet, are one-line errors before any projection."""
    _require_faces()
    from mobilestylegan.cli.project import main as project_main
    from mobilestylegan.io.images import save_png

    grey = save_png(np.full((200, 300, 3), 128, np.uint8), tmp_path / "wall.png")
    assert project_main([str(grey), "--align", "--generator", "embedded:tiny64", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "wall.png: no face found in the photo" in err and "Traceback" not in err
    monkeypatch.setattr(faces, "identity_model_path", lambda: None)
    faces.identity_network.cache_clear()
    assert (
        project_main(
            [
                str(PHOTOS / "astronaut.png"),
                "--align",
                "--identity-weight",
                "0.1",
                "--generator",
                "embedded:tiny64",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bash scripts/setup.sh --identity" in err and "Traceback" not in err
    assert not (tmp_path / "o2" / "projections.jsonl").exists()


def test_identity_distances_of_generated_faces(astronaut):
    """mobilestylegan.edit.identity (the distillation summary's `identity`): batches in [-1, 1] at a student's 128 px,
    upsampled; the same faces give 0, another person a distance past the same-person threshold; the landmark box is
    used where a face is found, FFHQ's fixed box where none is (a flat grey image)."""
    import torch
    import torch.nn.functional as F

    from mobilestylegan.edit.identity import FFHQ_IDENTITY_BOX, identity_distances

    _require_identity()

    def batch(img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
        return F.interpolate(x, size=(128, 128), mode="area")

    a, hopper = batch(align(astronaut).image), batch(align(_photo("grace_hopper.jpg")).image)
    grey = torch.zeros_like(a)
    same = identity_distances(torch.cat([a, grey]), torch.cat([a, grey]))
    assert same["measured"] and same["count"] == 2 and same["boxes"] == {"landmarks": 1, "ffhq": 1}
    assert same["worst"] == pytest.approx(0.0, abs=1e-6)
    other = identity_distances(a, hopper)
    assert other["median"] > 1.0 and other["distances"] == [round(other["median"], 4)]
    assert all(0 < f < 1 for f in FFHQ_IDENTITY_BOX)
    with pytest.raises(ValueError, match=r"two \[N, 3, R, R\] batches"):
        identity_distances(a, hopper[:, :, :64])


@pytest.mark.parametrize("shape,sigma", [((300, 200, 3), 20.0), ((50, 70, 3), 3.3), ((400, 410, 3), 81.9)])
def test_alignment_padding_blur_is_scipys_gaussian(shape, sigma):
    """The padding blur in numpy (the runtime has no scipy): scipy.ndimage.gaussian_filter with sigma on the two image
    axes, truncate 4, mirrored borders; float64 inside both, so the float32 results agree to ~1e-5 of 255 levels."""
    from scipy.ndimage import gaussian_filter

    from export.runtime_faces import gaussian_blur

    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    np.testing.assert_allclose(gaussian_blur(x, sigma), gaussian_filter(x, [sigma, sigma, 0]), rtol=0, atol=1e-3)
