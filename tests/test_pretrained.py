"""The published MobileStyleGAN FFHQ-1024 student (random-face's OpenVINO IR) in our PyTorch network.

Acceptance: for seeded z, mapped by our mapping network (no truncation), our student with
``noise_mode="const"`` reproduces OpenVINO running the *original* IR on CPU in float32 within the
toolkit's float32 parity rule (``teacher.numerics``: 2**11 ulps of max(1, peak |image|) over the 8 seeds,
~6.7e-4: seed 1 peaks at 2.75), on 8 seeds (default run). Also: the load_pretrained cache, structure, the
CLI, a sample image; ``-m slow`` adds the unfused (NNLS-fitted) import.
"""

from __future__ import annotations

import copy
import re
import time

import numpy as np
import pytest
import torch

from mobilestylegan.cli import import_pretrained
from mobilestylegan.io import pretrained
from mobilestylegan.io.checkpoint import load_student, save_student
from mobilestylegan.io.images import make_grid, save_png
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.unfuse import unfuse_state
from teacher.formats import openvino_ir
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity, max_abs_diff, parity_tolerance

INSTALL = "pip install --no-deps random-face==2021.7.21.1"


@pytest.fixture(scope="module")
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("mobilestylegan_cache")


@pytest.fixture(scope="module")
def G(ir_files, cache_root, two_threads):
    """What users get: load_pretrained into an empty cache (imports the IR and writes the cache)."""
    t0 = time.perf_counter()
    G = pretrained.load_pretrained("ffhq-1024", cache_dir=cache_root)
    print(f"\nimport + cache write: {time.perf_counter() - t0:.1f} s")
    return G


@pytest.fixture(scope="module")
def openvino_synthesis(ir_files):
    """The original synthesis IR on OpenVINO's CPU plugin in float32 (its default here is bf16)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(ir_files["synthesis_xml"])), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda w: compiled(w.astype(np.float32))[compiled.outputs[0]]  # [1, 512] -> [1, 3, 1024, 1024]


@pytest.fixture(scope="module")
def render(G, openvino_synthesis):
    """seed -> (ours, OpenVINO's) images for z from torch.Generator().manual_seed(seed); memoised."""
    done: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        if seed not in done:
            z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                ws = G.mapping(z)  # [1, 23, 512]: one w repeated (no truncation)
                ours = G.synthesis(ws, noise_mode="const").numpy()
            done[seed] = ours, openvino_synthesis(ws[:, 0].numpy())  # the IR takes the single w
        return done[seed]

    return run


def check_parity(render, seeds) -> None:
    """Ours against OpenVINO f32 on the original IR (the reference) by the float32 parity rule, over all
    seeds at once (one tolerance from the peak of the whole set, as the exporter's parity check does)."""
    ours, refs = [], []
    for seed in seeds:
        a, ref = render(seed)
        assert a.shape == ref.shape == (1, 3, 1024, 1024)
        diff = np.abs(a - ref)
        print(
            f"seed {seed}: max abs diff {diff.max():.3g}, mean {diff.mean():.3g} "
            f"(image range {ref.min():.2f}..{ref.max():.2f})"
        )
        ours.append(a)
        refs.append(ref)
    ours, refs = np.concatenate(ours), np.concatenate(refs)
    print(f"all seeds: max abs diff {max_abs_diff(ours, refs):.3g}, tolerance {parity_tolerance(refs):.3g}")
    assert_parity(ours, refs, f"seeds {list(seeds)}: ours vs OpenVINO f32")


def test_parity_with_openvino_8_seeds(render):
    """The acceptance test of the import: 8 seeds, max |ours - OpenVINO f32| within the float32 parity rule."""
    check_parity(render, seeds=range(8))


def test_structure(G, ir_files):
    syn = G.synthesis
    assert syn.fused and syn.to_img1 is None
    assert all(block.to_img is None for block in syn.layers[:-1]) and syn.layers[-1].to_img is not None
    assert not any("style_inv" in k for k in syn.state_dict())
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    # The IR holds 7,306,380 learned weights: the reference student without its 7 auxiliary heads
    # (7,306,395) minus the 15 scalar noise strengths, which it folds into the noise maps. We split
    # each map back into a strength (a parameter) and a unit map (a buffer), so the fused import has
    # 7,306,380 + 15 parameters, plus 699,024 noise-map elements in buffers (15 maps, 4..512 px).
    assert sum(p.numel() for p in syn.parameters()) == 7_306_380 + 15
    noise_res = [4] + [r for r in (8, 16, 32, 64, 128, 256, 512) for _ in (0, 1)]
    assert sum(b.numel() for b in syn.buffers()) == sum(r * r for r in noise_res) == 699_024
    assert sum(p.numel() for p in G.mapping.parameters()) == 8 * (512 * 512 + 512)
    info = G.info
    assert info["pretrained_name"] == "ffhq-1024" and info["fused"] is True
    assert info["source_files"]["SynthesisNetwork.bin"]["sha256"].startswith("c7da15fa")
    assert info["source_files"]["SynthesisNetwork.xml"]["sha256"].startswith("7918fce5")
    assert "estimated" in info["w_avg_source"]


def test_constants_match_the_ir(G, ir_files):
    """Spot checks against the IR constants by name, independent of the graph walk."""
    import openvino as ov

    consts = {
        op.get_friendly_name(): op.get_data()
        for op in ov.Core().read_model(str(ir_files["synthesis_xml"])).get_ordered_ops()
        if op.get_type_name() == "Constant"
    }
    sd = G.synthesis.state_dict()
    np.testing.assert_array_equal(
        sd["layers.3.conv1.conv.weight_dw"].numpy(), consts["m.layers.3.conv1.conv.weight_dw"][:, :, 0]
    )
    np.testing.assert_array_equal(sd["layers.3.conv1.conv.weight_permute"].numpy(), consts["Mul_406_copy"])
    np.testing.assert_array_equal(sd["conv1.conv.weight"].numpy().reshape(512, 512, 3, 3), consts["Mul_39_copy"])
    np.testing.assert_array_equal(sd["layers.5.up.modulation.bias"].numpy(), consts["m.layers.5.up.modulation.bias"][0])
    # Noise: strength * unit map gives back the IR map (the IR's friendly names).
    names = [
        "1531",
        "1560",
        "1572",
        "1601",
        "1613",
        "1642",
        "1654",
        "1683",
        "1695",
        "1724",
        "1736",
        "1765",
        "1777",
        "1806",
        "1818",
    ]
    for conv, name in zip(G.synthesis.styled_convs(), names):
        unit = conv.noise_const.double()
        assert abs(float(unit.std(unbiased=False)) - 1) < 1e-5 and float(conv.noise.weight) > 0
        assert_parity(conv.noise.weight.double() * unit, consts[name], f"noise map {name}: strength x unit map")
    assert 0.2 < float(G.synthesis.layers[4].conv1.noise.weight) < 0.3  # the IR map's std is 2.5e-1


def test_sample_image(G, render, tmp_path):
    ours, _ = render(0)
    img = torch.from_numpy(ours)
    grid = make_grid(img, pad=0)
    path = save_png(grid, tmp_path / "ffhq_seed0.png")
    from PIL import Image

    assert Image.open(path).size == (1024, 1024)
    x = img[0]  # [3, 1024, 1024]
    assert 0.2 < float(x.std()) < 0.8  # not constant, not noise blown up
    assert float((x.abs() <= 1).float().mean()) > 0.99  # mostly within [-1, 1] (the IR does not clamp)
    # Smooth like a photo, not like noise: neighbouring pixels differ far less than the spread.
    assert float((x[:, 1:] - x[:, :-1]).abs().mean()) < 0.2 * float(x.std())
    # FFHQ is aligned: the centre is the face, and skin is reddish (R above G and B).
    r, g, b = x[:, 384:640, 384:640].mean(dim=(1, 2)).tolist()
    assert r > g and r > b


def test_cache_is_reused(G, cache_root, monkeypatch):
    def must_not_import(*a, **k):
        raise AssertionError("re-imported although the cache is valid")

    monkeypatch.setattr(pretrained, "import_published_ir", must_not_import)
    again = pretrained.load_pretrained("ffhq-1024", cache_dir=cache_root)
    assert (cache_root / "pretrained" / "ffhq-1024.pt").is_file()
    a, b = G.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.info == G.info and not again.training


def test_cache_corrupt_or_stale_is_reimported(G, cache_root, tmp_path, monkeypatch):
    calls = []

    def fake_import(*a, **k):  # the real import is covered above; here only whether it runs matters
        calls.append(1)
        return copy.deepcopy(G)

    monkeypatch.setattr(pretrained, "import_published_ir", fake_import)
    path = pretrained.cache_path("ffhq-1024", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    pretrained.load_pretrained("ffhq-1024", cache_dir=tmp_path)
    assert len(calls) == 1 and load_student(path).info["pretrained_name"] == "ffhq-1024"  # rewritten

    pretrained.load_pretrained("ffhq-1024", cache_dir=tmp_path)
    assert len(calls) == 1  # valid now

    info = copy.deepcopy(G.info)
    info["source_files"]["SynthesisNetwork.bin"]["sha256"] = "0" * 64  # made from other files
    save_student(path, G, info)
    pretrained.load_pretrained("ffhq-1024", cache_dir=tmp_path)
    assert len(calls) == 2
    assert load_student(path).info["source_files"]["SynthesisNetwork.bin"]["sha256"].startswith("c7da15fa")


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path / "env"))
    assert pretrained.cache_path("ffhq-1024") == tmp_path / "env" / "pretrained" / "ffhq-1024.pt"
    assert pretrained.cache_path("ffhq-1024", tmp_path / "x") == tmp_path / "x" / "pretrained" / "ffhq-1024.pt"
    monkeypatch.delenv("MOBILESTYLEGAN_CACHE")
    assert str(pretrained.cache_path("ffhq-1024")).endswith(".cache/mobilestylegan/pretrained/ffhq-1024.pt")


def test_missing_package(tmp_path, monkeypatch, capsys):
    def missing():
        raise CheckpointError("random-face's OpenVINO IR files were not found")

    monkeypatch.setattr(openvino_ir, "random_face_files", missing)
    with pytest.raises(CheckpointError, match=re.escape(INSTALL)):
        pretrained.load_pretrained("ffhq-1024", cache_dir=tmp_path)
    assert import_pretrained.main(["ffhq-1024", str(tmp_path / "out.pt")]) == 1
    assert INSTALL in capsys.readouterr().err


def test_unknown_name(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="unknown pretrained model 'ffhq-256'; known: ffhq-1024"):
        pretrained.load_pretrained("ffhq-256", cache_dir=tmp_path)
    assert import_pretrained.main(["ffhq-256", str(tmp_path / "out.pt")]) == 2
    assert "known: ffhq-1024" in capsys.readouterr().err


def test_cli(tmp_path, capsys, monkeypatch, G):
    with pytest.raises(SystemExit) as exc:
        import_pretrained.main(["--help"])
    assert exc.value.code == 0
    assert "mobilestylegan-import ffhq-1024 ffhq1024_student.pt" in capsys.readouterr().out
    assert import_pretrained.main(["--list"]) == 0 and "ffhq-1024" in capsys.readouterr().out
    assert import_pretrained.main(["ffhq-1024", str(tmp_path / "out.safetensors")]) == 2

    monkeypatch.setattr(import_pretrained, "import_published_ir", lambda *a, **k: copy.deepcopy(G))
    out = tmp_path / "out.pt"
    assert import_pretrained.main(["ffhq-1024", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and load_student(out).synthesis.fused
    assert import_pretrained.main(["ffhq-1024", str(out)]) == 2  # exists, no --force
    assert import_pretrained.main(["ffhq-1024", str(out), "--force"]) == 0


def test_rejects_other_graphs(ir_files):
    with pytest.raises(CheckpointError, match="not the published MobileStyleGAN student"):
        pretrained.import_published_ir(ir_files["mapping_xml"], ir_files["mapping_xml"])


def _tamper_scale(ops, const):  # layers.3.conv1's modulation scale 1/sqrt(128*9) -> 0.5
    return const(np.full((1, 1, 1, 1), 0.5, np.float32)), "Constant_384", "modulation scale"


def _tamper_haar(ops, const):  # a high-pass IDWT filter (g1) of block 0 replaced by the low-pass g0
    return const(np.full((128, 1, 1, 2, 1), 2**-0.5, np.float32)), "1540", "Haar filter taps"


def _tamper_clamp(ops, const):  # an extra op on the data path: clamp block 2's output
    return None, "LeakyRelu_342", "expected Multiply after LeakyRelu_342, found Clamp"


@pytest.mark.parametrize("tamper", [_tamper_scale, _tamper_haar, _tamper_clamp])
def test_rejects_tampered_graph(ir_files, monkeypatch, tamper):
    """The graph walk checks what it relies on: a changed scale, filter or an extra op is refused."""
    import openvino as ov
    import openvino.opset13 as opset

    model = ov.Core().read_model(str(ir_files["synthesis_xml"]))
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    new, name, message = tamper(ops, opset.constant)
    if new is None:
        node = ops[name]
        targets = list(node.output(0).get_target_inputs())
        clamp = opset.clamp(node.output(0), -10.0, 10.0)
        for t in targets:
            t.replace_source_output(clamp.output(0))
    else:
        ops[name].output(0).replace(new.output(0))
    monkeypatch.setattr(openvino_ir, "read_model", lambda path: model)
    with pytest.raises(CheckpointError, match=message):
        pretrained.import_published_ir(ir_files["synthesis_xml"], ir_files["mapping_xml"])


def test_unfuse_recovers_a_demodulation_vector():
    """The NNLS fit behind ``unfused=True`` on a tiny random student: fold, recover, same output."""
    pytest.importorskip("scipy")
    torch.manual_seed(0)
    cfg = StudentConfig.for_resolution(32, width=1 / 32, aux_heads=False)
    net = MobileSynthesisNetwork(cfg).eval()
    with torch.no_grad():
        for conv in net.styled_convs():
            conv.conv.style_inv.copy_(torch.randn_like(conv.conv.style_inv))
    fused = copy.deepcopy(net)
    for conv in fused.styled_convs():  # what the IR holds: demodulation folded, head still in wavelets
        conv.conv.fuse()
    state = dict(fused.state_dict())
    recovered = MobileSynthesisNetwork(cfg).eval()
    fit = unfuse_state(state, recovered, "tiny student")
    recovered.load_state_dict(state, strict=True)
    assert max(fit.values()) < 1e-5
    ws = torch.randn([2, cfg.w_dim])
    with torch.no_grad():
        assert_parity(recovered(ws), net(ws), "recovered (fitted style_inv) vs original student")


@pytest.mark.slow
def test_unfused_import_matches(G, ir_files, render):
    """``unfused=True`` (run-time demodulation, fitted style_inv) renders the same image as the fused import."""
    pytest.importorskip("scipy")
    Gu = pretrained.import_published_ir(ir_files["synthesis_xml"], ir_files["mapping_xml"], unfused=True)
    assert not Gu.synthesis.fused and max(Gu.info["demod_fit_max_abs_d_minus_1"].values()) < 1e-6
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = Gu(z).numpy()
    ours, ref = render(0)
    print(f"unfused vs fused: {np.abs(img - ours).max():.3g}, vs OpenVINO: {np.abs(img - ref).max():.3g}")
    assert_parity(img, ours, "unfused vs fused import")  # the fused import against OpenVINO: the 8-seed test
