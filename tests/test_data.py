"""Distillation triples: layer-resolution rules, shapes, pyramid, determinism, style mixing,
truncation, validation set, validation errors, a student as teacher, the pre-rendered cache."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import teacher
from mobilestylegan.distill.cache import CachedTripleSource
from mobilestylegan.distill.triples import (
    NO_MIXING,
    STREAM_POOL,
    STREAM_TRIPLE,
    Triple,
    TripleSource,
    sample_generator,
    shard,
    student_ws_resolution,
    teacher_ws_resolution,
    ws_resolutions,
)
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import dwt
from teacher.mapping import MappingNetwork
from teacher.numerics import assert_parity
from teacher.synthesis import SynthesisNetwork
from tests.helpers.teachers import randomize

W = 16


@pytest.fixture(scope="module")
def G() -> teacher.Generator:
    cfg = teacher.GeneratorConfig(
        z_dim=W, w_dim=W, img_resolution=64, channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 8}, mapping_layers=2
    )
    return randomize(teacher.Generator(cfg), seed=3).eval()


@pytest.fixture(scope="module")
def student_teacher() -> StudentGenerator:
    mapping = randomize(MappingNetwork(W, W, 2), seed=4)
    G = StudentGenerator(StudentConfig(img_resolution=64, w_dim=W, channels=(16, 16, 16, 8)), mapping)
    randomize(G.synthesis, seed=5)
    return G.eval()


def scfg(res: int = 32) -> StudentConfig:
    return StudentConfig(img_resolution=res, w_dim=W, channels=tuple([8] * (res.bit_length() - 3)))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_triples_equal(a: Triple, b: Triple) -> None:
    for x, y in zip([a.ws, *a.noise, *a.images, *a.wavelets], [b.ws, *b.noise, *b.images, *b.wavelets]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# -- W+ layer resolutions -------------------------------------------------------------------------------
def test_layer_resolution_rules_at_1024():
    # The 1024 layouts with 4 channels everywhere (the routing does not depend on widths).
    t = SynthesisNetwork(teacher.GeneratorConfig(z_dim=4, w_dim=4, channels={4 * 2**i: 4 for i in range(9)}))
    s = MobileSynthesisNetwork(StudentConfig(w_dim=4, channels=(4,) * 8))
    assert (t.num_ws, s.num_ws) == (18, 23)
    tr = [teacher_ws_resolution(i) for i in range(18)]
    sr = [student_ws_resolution(i) for i in range(23)]
    assert tr == [4] + [r for k in range(1, 9) for r in (4 * 2**k,) * 2] + [2048]
    assert sr == [4] + [r for k in range(7) for r in (8 * 2**k,) * 3] + [1024]
    assert ws_resolutions(t, 18).tolist() == tr and ws_resolutions(s, 23).tolist() == sr
    # Against the routing the networks use: every conv's w index maps to the conv's resolution.
    w_idx = 0
    for block in t.blocks():
        for j, layer in enumerate(block.layers()):
            assert tr[w_idx + j] == layer.resolution
        w_idx += block.num_conv
    assert s.conv1.resolution == sr[0] == 4
    for i, block in enumerate(s.layers):
        assert sr[3 * i + 1] == sr[3 * i + 2] == block.conv1.resolution == block.conv2.resolution  # up+conv1, conv2
        assert sr[3 * i + 3] == block.resolution  # its head
    # The shared index 1 (4x4 ToRGB / head and the first 8x8 conv) counts at 8 in both networks.
    assert tr[1] == sr[1] == 8
    with pytest.raises(ValueError, match="unknown synthesis"):
        ws_resolutions(torch.nn.Linear(2, 2), 3)


# -- shapes, pyramid, wavelets ----------------------------------------------------------------------------
@pytest.mark.parametrize("res", [32, 64])
def test_shapes(G, res):
    src = TripleSource(G, scfg(res))
    tr = src.sample(3, gen(0), "cpu")
    num_ws = scfg(res).num_ws
    assert len(tr) == 3 and tr.ws.shape == (3, num_ws, W)
    with torch.device("meta"):
        want = MobileSynthesisNetwork(scfg(res)).noise_shapes
    assert [tuple(n.shape) for n in tr.noise] == [(3, *s) for s in want]
    heads = [4 * 2**i for i in range(res.bit_length() - 3)]
    assert [tuple(i.shape) for i in tr.images] == [(3, 3, 2 * r, 2 * r) for r in heads]
    assert [tuple(w.shape) for w in tr.wavelets] == [(3, 12, r, r) for r in heads]
    assert tr.images[-1].shape[-1] == res
    sub = tr.subset([2, 0])
    assert (
        len(sub) == 2
        and torch.equal(sub.images[0][1], tr.images[0][0])
        and torch.equal(sub.noise[3][0], tr.noise[3][2])
    )
    assert len(tr.subset(slice(1, 3))) == 2 and tr.to("cpu").ws.device.type == "cpu"


def test_pyramid_is_area_downsampled_teacher_render(G):
    """Re-draw z and noise by the documented order and render with the contract's own mapping."""
    psi = 0.7
    src = TripleSource(G, scfg(32), truncation_psi=psi, style_mixing_prob=0.0, render_batch=2)
    tr = src.sample(5, gen(11), "cpu")
    g = gen(11)
    z1 = torch.randn([5, W], generator=g)
    torch.randn([5, W], generator=g), torch.rand([5], generator=g), torch.randint(0, 2, [5], generator=g)
    noise = G.synthesis.make_noise(5, "random", generator=g)
    with torch.no_grad():
        ws_t = G.mapping(z1, truncation_psi=psi)  # [N, 10, W] broadcast + truncated
        img = G.synthesis(ws_t, noise=noise)  # [N, 3, 64, 64]
    torch.testing.assert_close(tr.ws, ws_t[:, :1].expand(-1, 8, -1), rtol=0, atol=0)
    for mine, theirs in zip(tr.noise, noise[:5]):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    # Rendered in one batch: the finest level is exactly the area-downsampled render.
    whole = TripleSource(G, scfg(32), truncation_psi=psi, style_mixing_prob=0.0).sample(5, gen(11), "cpu")
    torch.testing.assert_close(whole.images[-1], F.interpolate(img, size=(32, 32), mode="area"), rtol=0, atol=0)
    # In chunks of 2 (batch size changes float rounding) and at the coarser levels (box filters compose).
    for level in tr.images:
        s = level.shape[-1]
        assert_parity(level, F.interpolate(img, size=(s, s), mode="area"), f"level {s} vs area")
        assert_parity(level, F.avg_pool2d(img, 64 // s), f"level {s} vs avg_pool")
    for level, wav in zip(tr.images, tr.wavelets):
        torch.testing.assert_close(wav, dwt(level), rtol=0, atol=0)


# -- randomness ---------------------------------------------------------------------------------------------
def test_determinism(G):
    src = TripleSource(G, scfg(32), truncation_psi=0.8)
    g = gen(5)
    state = g.get_state()
    a = src.sample(4, g, "cpu")
    b_next = src.sample(4, g, "cpu")
    g.set_state(state)
    assert_triples_equal(a, src.sample(4, g, "cpu"))
    assert_triples_equal(a, TripleSource(G, scfg(32), truncation_psi=0.8).sample(4, gen(5), "cpu"))
    c = src.sample(4, gen(6), "cpu")
    for other in (b_next, c):
        assert not torch.equal(a.ws, other.ws) and not torch.equal(a.images[-1], other.images[-1])
        assert not torch.equal(a.noise[-1], other.noise[-1])
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        src.sample(2, None, "cpu")


def _rows_switch_at(ws, w1, w2, res):
    """Per sample: the lowest layer resolution whose row is w2 (every higher one too, every lower w1)."""
    out = []
    for n in range(ws.shape[0]):
        is2 = torch.tensor([torch.equal(ws[n, i], w2[n]) for i in range(ws.shape[1])])
        is1 = torch.tensor([torch.equal(ws[n, i], w1[n]) for i in range(ws.shape[1])])
        assert bool((is1 ^ is2).all())
        c = int(res[is2].min())
        assert bool((is2 == (res >= c)).all())
        out.append(c)
    return out


def test_style_mixing_by_resolution(G):
    src = TripleSource(G, scfg(64), style_mixing_prob=1.0)
    g = gen(2)
    state = g.get_state()
    styles, _ = src.draw(16, g, "cpu")
    g.set_state(state)
    tr = src.sample(16, g, "cpu")
    assert set(styles.crossover.tolist()) == {8, 16, 32}  # the student's feature resolutions above 4
    assert not torch.equal(styles.w1, styles.w2)
    ws_t, ws_s = src.teacher_ws(styles), src.student_ws(styles)
    torch.testing.assert_close(tr.ws, ws_s, rtol=0, atol=0)
    ct = _rows_switch_at(ws_t, styles.w1, styles.w2, src.teacher_resolutions)
    cs = _rows_switch_at(ws_s, styles.w1, styles.w2, src.student_resolutions)
    assert ct == cs == styles.crossover.tolist()

    tr0 = TripleSource(G, scfg(64), style_mixing_prob=0.0).sample(8, gen(2), "cpu")
    torch.testing.assert_close(tr0.ws, tr0.ws[:, :1].expand_as(tr0.ws), rtol=0, atol=0)
    styles0, _ = TripleSource(G, scfg(64), style_mixing_prob=0.0).draw(8, gen(2), "cpu")
    assert (styles0.crossover == NO_MIXING).all() and torch.equal(styles0.w1, styles0.w2)


def test_truncation(G):
    w_avg = G.mapping.w_avg
    tr = TripleSource(G, scfg(32), truncation_psi=0.0, style_mixing_prob=0.9).sample(4, gen(0), "cpu")
    assert_parity(tr.ws, w_avg.expand_as(tr.ws), "psi = 0")
    g = gen(0)
    styles, _ = TripleSource(G, scfg(32), truncation_psi=0.5, style_mixing_prob=0.0).draw(4, g, "cpu")
    z1 = torch.randn([4, W], generator=gen(0))
    with torch.no_grad():
        want = w_avg + 0.5 * (G.mapping.embed(z1) - w_avg)
    assert_parity(styles.w1, want, "psi = 0.5")


# -- validation set and mean image -------------------------------------------------------------------------
def test_fixed_set(G):
    a = TripleSource(G, scfg(32), truncation_psi=0.7, render_batch=3).fixed_set(4, seed=9, device="cpu")
    src = TripleSource(G, scfg(32), truncation_psi=0.7)
    b = src.fixed_set(4, seed=9, device="cpu")
    assert_close_triples(a, b)
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    torch.testing.assert_close(b.ws, b.ws[:, :1].expand_as(b.ws), rtol=0, atol=0)  # no mixing
    assert src.fixed_set(4, seed=9, device="cpu").images[-1].data_ptr() == b.images[-1].data_ptr()  # cached
    assert_close_triples(src.fixed_set(2, seed=9, device="cpu"), b.subset(slice(0, 2)))  # prefix-stable
    assert not torch.equal(src.fixed_set(4, seed=10, device="cpu").ws, b.ws)
    # The mean image follows the same draws.
    mean = src.mean_image(4, seed=9, device="cpu")
    assert mean.shape == (1, 3, 32, 32)
    assert_parity(mean, b.images[-1].mean(0, keepdim=True), "mean image")


def assert_close_triples(a: Triple, b: Triple) -> None:
    for x, y in zip([a.ws, *a.noise, *a.images, *a.wavelets], [b.ws, *b.noise, *b.images, *b.wavelets]):
        assert_parity(x, y, "triples")


# -- validation errors -------------------------------------------------------------------------------------
def test_validation_errors(G):
    with pytest.raises(ValueError, match=r"disagree on w_dim.*StudentConfig\(w_dim=16"):
        TripleSource(G, StudentConfig(img_resolution=32, w_dim=8, channels=(8, 8, 8)))
    with pytest.raises(ValueError, match="a 128-px student cannot learn from a 64-px teacher"):
        TripleSource(G, scfg(128))
    odd = types.SimpleNamespace(w_dim=W, img_resolution=96, synthesis=G.synthesis, mapping=G.mapping)
    with pytest.raises(ValueError, match="power of two"):
        TripleSource(odd, scfg(32))
    few = types.SimpleNamespace(
        w_dim=W,
        img_resolution=64,
        mapping=G.mapping,
        synthesis=types.SimpleNamespace(noise_shapes=[(1, 4, 4), (1, 8, 8)]),
    )
    with pytest.raises(ValueError, match="cannot supply the 32-px student's noise"):
        TripleSource(few, scfg(32))
    with pytest.raises(ValueError, match="style_mixing_prob"):
        TripleSource(G, scfg(32), style_mixing_prob=1.5)
    with pytest.raises(ValueError, match="render_batch"):
        TripleSource(G, scfg(32), render_batch=0)


# -- a student as teacher ----------------------------------------------------------------------------------
def test_student_generator_as_teacher(student_teacher):
    T = student_teacher
    src = TripleSource(T, scfg(32), truncation_psi=0.9, style_mixing_prob=1.0)
    assert src.teacher_resolutions.tolist() == [student_ws_resolution(i) for i in range(T.num_ws)]
    g = gen(7)
    state = g.get_state()
    tr = src.sample(6, g, "cpu")
    g.set_state(state)
    styles, noise = src.draw(6, g, "cpu")
    ws_t = src.teacher_ws(styles)
    assert ws_t.shape == (6, 11, W) and tr.ws.shape == (6, 8, W)
    assert _rows_switch_at(ws_t, styles.w1, styles.w2, src.teacher_resolutions) == _rows_switch_at(
        tr.ws, styles.w1, styles.w2, src.student_resolutions
    )
    with torch.no_grad():
        img = T.synthesis(ws_t, noise=noise)
    for level in tr.images:
        assert_parity(level, F.avg_pool2d(img, 64 // level.shape[-1]), "student teacher's pyramid")
    for mine, theirs in zip(tr.noise, noise):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


# -- pre-rendered cache -------------------------------------------------------------------------------------
def test_cached_source(G):
    src = TripleSource(G, scfg(32), truncation_psi=0.7, style_mixing_prob=0.9)
    exact = CachedTripleSource(src, size=7, seed=3, chunk=3, progress=False, storage_dtype=torch.float32).fill("cpu")
    half = CachedTripleSource(src, size=7, seed=3, chunk=3, progress=False).fill("cpu")
    assert len(exact) == 7 and half.images.dtype == torch.float16 and half.images.shape == (7, 3, 32, 32)
    # float32 storage: bit-identical to the live source drawing the same chunks.
    g = gen(3)
    live = [src.sample(k, g, "cpu") for k in (3, 3, 1)]
    for start, part in zip((0, 3, 6), live):
        assert_triples_equal(exact.get(torch.arange(start, start + len(part)), "cpu"), part)
    # float16 storage: within 2**-11 relative per pixel, 1e-3 absolute after downsampling.
    a, b = exact.get(slice(None), "cpu"), half.get(slice(None), "cpu")
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    assert ((a.images[-1] - b.images[-1]).abs() <= a.images[-1].abs() * 2.0**-11 + 1e-7).all()
    for x, y in zip(a.images + a.wavelets, b.images + b.wavelets):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-3 * max(1.0, float(x.abs().max())))
    # Sampling: distinct pooled triples chosen by the generator, reproducibly.
    s1, s2 = exact.sample(4, gen(1), "cpu"), exact.sample(4, gen(1), "cpu")
    assert_triples_equal(s1, s2)
    idx = torch.randperm(7, generator=gen(1))[:4]
    assert_triples_equal(s1, exact.get(idx, "cpu"))
    assert len({tuple(w.flatten().tolist()) for w in s1.ws}) == 4
    with pytest.raises(ValueError, match="pool size"):
        exact.sample(8, gen(0), "cpu")
    assert_triples_equal(exact.fixed_set(2, 0, "cpu"), src.fixed_set(2, 0, "cpu"))
    assert exact.to("cpu") is exact and src.to("cpu") is src
    assert_triples_equal(exact.sample(4, gen(1), "cpu"), s1)
    # With style mixing the pool is not the validation distribution: the mean image comes from the live source.
    torch.testing.assert_close(exact.mean_image(3, 5, "cpu"), src.mean_image(3, 5, "cpu"), rtol=0, atol=0)


def test_cached_source_mean_image_is_the_pool_mean(G):
    """Without mixing the pool is a sample of the validation distribution: its mean is the baseline's image."""
    src = TripleSource(G, scfg(32), truncation_psi=0.7, style_mixing_prob=0.0)
    pool = CachedTripleSource(src, size=600, seed=3, chunk=200, progress=False, storage_dtype=torch.float32).fill("cpu")
    mean = pool.mean_image(4, seed=9, device="cpu")
    assert mean.shape == (1, 3, 32, 32) and mean.dtype == torch.float32
    assert_parity(mean, pool.images.double().mean(0, keepdim=True), "pool mean")
    # An estimate of the same image as the live source's independent one (600 vs 300 samples).
    live = src.mean_image(300, seed=11, device="cpu")
    spread = pool.images.std(0, keepdim=True)
    assert float(((mean - live).abs() / spread).mean()) < 0.15  # ~0.07 expected: 1/sqrt(300) + 1/sqrt(600)


def test_openvino_cache_renderer_matches_torch():
    """The OpenVINO stand-in for the teacher's synthesis (f32) renders the same cache as PyTorch."""
    from mobilestylegan.distill.render import OpenVINOSynthesis

    T = _tiny_teacher_for_ov()
    src = TripleSource(T, StudentConfig(img_resolution=32, w_dim=16, channels=(16, 16, 8)), style_mixing_prob=0.5)
    ref = CachedTripleSource(src, size=5, seed=3, chunk=2, progress=False, storage_dtype=torch.float32).fill("cpu")
    ov = OpenVINOSynthesis(T.synthesis, batch_size=2, precision="f32")  # 5 = 2 + 2 + 1 (padded)
    ov_cache = CachedTripleSource(
        src, size=5, seed=3, chunk=2, progress=False, storage_dtype=torch.float32, renderer=ov
    ).fill("cpu")
    assert_parity(ov_cache.images, ref.images, "OpenVINO f32 cache")
    with pytest.raises(ValueError, match="precision"):
        OpenVINOSynthesis(T.synthesis, batch_size=2, precision="int4")


def test_openvino_cache_renderer_student_teacher_lean_graph():
    """A MobileStyleGAN teacher renders through its lean export graph (W+ and noise as inputs), box-downsampled
    to the student's resolution inside the graph: the same cache as PyTorch."""
    from mobilestylegan.distill.render import OpenVINOSynthesis
    from mobilestylegan.student.generator import StudentGenerator
    from teacher.mapping import MappingNetwork

    torch.manual_seed(0)
    T = StudentGenerator(
        StudentConfig(img_resolution=64, w_dim=16, channels=(16, 16, 16, 8), trainable_demod=True),
        MappingNetwork(16, 16, 2),
    ).eval()
    with torch.no_grad():
        for p in T.synthesis.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-trivial noise strengths and biases
    src = TripleSource(T, StudentConfig(img_resolution=32, w_dim=16, channels=(16, 16, 8)), style_mixing_prob=0.5)
    ref = CachedTripleSource(src, size=3, seed=3, chunk=2, progress=False, storage_dtype=torch.float32).fill("cpu")
    ov = OpenVINOSynthesis(T.synthesis, batch_size=2, precision="f32", out_resolution=32)
    ov_cache = CachedTripleSource(
        src, size=3, seed=3, chunk=2, progress=False, storage_dtype=torch.float32, renderer=ov
    ).fill("cpu")
    assert ov_cache.images.shape == (3, 3, 32, 32)
    assert_parity(ov_cache.images, ref.images, "OpenVINO f32 cache of the lean graph")
    # The same renderer stands in for the teacher in the validation set and the mean image (val_with_renderer).
    by_torch = src.fixed_set(3, 7, "cpu")
    fast = TripleSource(T, src.student_cfg)
    fast.eval_synthesis = ov
    assert_parity(fast.fixed_set(3, 7, "cpu").images[-1], by_torch.images[-1], "validation set rendered by OpenVINO")
    assert_parity(fast.mean_image(3, 9, "cpu"), src.mean_image(3, 9, "cpu"), "mean image rendered by OpenVINO")
    with pytest.raises(ValueError, match="out_resolution"):
        OpenVINOSynthesis(T.synthesis, batch_size=2, out_resolution=48)


def _tiny_teacher_for_ov():
    import teacher
    from tests.helpers.teachers import randomize

    cfg = teacher.GeneratorConfig(
        z_dim=16, w_dim=16, img_resolution=64, channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 8}, mapping_layers=2
    )
    return randomize(teacher.Generator(cfg), seed=4).eval().requires_grad_(False)


# -- process-count independence ------------------------------------------------------------------------------
def test_sample_generators_and_shards():
    draw = lambda *key: torch.rand(4, generator=sample_generator(*key)).tolist()  # noqa: E731
    keys = [
        (0, 0, 0, STREAM_TRIPLE),
        (0, 0, 1, STREAM_TRIPLE),
        (0, 1, 0, STREAM_TRIPLE),
        (1, 0, 0, STREAM_TRIPLE),
        (0, 0, 0, STREAM_POOL),
        (0, 0, -1, STREAM_TRIPLE),
    ]
    streams = [draw(*k) for k in keys]
    assert draw(*keys[0]) == streams[0]  # a stream is a function of its key alone
    assert len({tuple(x) for x in streams}) == len(keys)  # any other seed, step, sample or purpose differs
    with pytest.raises(ValueError):
        sample_generator(0, -1, 0, STREAM_TRIPLE)
    assert [shard(10, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert [shard(4, r, 2) for r in range(2)] == [slice(0, 2), slice(2, 4)] and shard(5, 0, 1) == slice(0, 5)
    with pytest.raises(ValueError):
        shard(4, 2, 2)


def _joined(parts: list[Triple]) -> Triple:
    cat = lambda name: [torch.cat(ts) for ts in zip(*(getattr(t, name) for t in parts))]  # noqa: E731
    return Triple(torch.cat([t.ws for t in parts]), cat("noise"), cat("images"), cat("wavelets"))


def test_a_step_split_across_processes_is_the_whole_step(G):
    """Rank r of P renders samples shard(P * B, r, P) of a step: the parts together are the single-process
    batch (the same noise bit for bit; w and images up to the rounding of smaller batches), whatever P."""
    src = TripleSource(G, scfg(32), truncation_psi=0.8, style_mixing_prob=0.5)
    whole = src.sample_step(7, 3, 6, slice(0, 6), "cpu")
    for world in (2, 3):
        parts = [src.sample_step(7, 3, 6, shard(6, r, world), "cpu") for r in range(world)]
        joined = _joined(parts)
        for x, y in zip(joined.noise, whole.noise):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        assert_parity(joined.ws, whole.ws, f"{world} processes' w (mapped in smaller batches)")
        assert_parity(joined.images[-1], whole.images[-1], f"{world} processes' images")
        assert not torch.equal(parts[0].ws, parts[1].ws)
    assert not torch.equal(src.sample_step(7, 4, 6, slice(0, 6), "cpu").ws, whole.ws)  # the next step differs
    assert not torch.equal(src.sample_step(8, 3, 6, slice(0, 6), "cpu").ws, whole.ws)  # another seed too
    # A batch of 4 is the first 4 samples of the batch of 6: a sample depends on (seed, step, index) only.
    assert_parity(src.sample_step(7, 3, 4, slice(0, 4), "cpu").ws, whole.ws[:4], "a smaller global batch")


def test_cached_step_split_and_pool_storage(G):
    src = TripleSource(G, scfg(32), truncation_psi=0.7, style_mixing_prob=0.9)
    pool = CachedTripleSource(src, size=9, seed=3, chunk=4, progress=False, storage_dtype=torch.float32)
    assert not pool.filled
    with pytest.raises(RuntimeError, match="fill"):
        pool.get([0], "cpu")
    pool.fill("cpu")
    assert pool.images.device.type == "cpu" and all(m.device.type == "cpu" for m in pool.noise)
    whole = pool.sample_step(5, 2, 6, slice(0, 6), "cpu")
    parts = [pool.sample_step(5, 2, 6, shard(6, r, 2), "cpu") for r in range(2)]
    assert_triples_equal(_joined(parts), whole)
    idx = torch.randperm(9, generator=sample_generator(5, 2, -1, STREAM_POOL))[:6]
    assert_triples_equal(whole, pool.get(idx, "cpu"))
    with pytest.raises(ValueError, match="pool size"):
        pool.sample_step(5, 2, 10, slice(0, 5), "cpu")


def test_cache_filled_by_two_processes_is_the_cache_of_one(G):
    """Each of 2 processes renders every other chunk and the chunks are broadcast (here: two in-process
    'ranks' whose broadcast copies from the owner's pool): the same pool as one process renders."""
    src = TripleSource(G, scfg(32), truncation_psi=0.7, style_mixing_prob=0.9)
    make = lambda: CachedTripleSource(src, size=7, seed=3, chunk=2, progress=False, storage_dtype=torch.float32)  # noqa: E731
    one = make().fill("cpu")
    rendered = {}

    class Renderer:  # counts what each rank renders
        def __init__(self, rank):
            self.rank = rank

        def __call__(self, ws, noise):
            rendered[self.rank] = rendered.get(self.rank, 0) + len(ws)
            return G.synthesis(ws, noise=noise)

    ranks = []
    for r in range(2):
        pool = make()
        pool.renderer = Renderer(r)
        ranks.append(pool)
    # Rank r's pass: its own chunks rendered, the others' filled in by the broadcast (the owner's images).
    owner_images = {}
    for r, pool in enumerate(ranks):
        calls = iter(range(4))

        def broadcast(t, src_rank, r=r, calls=calls):
            c = next(calls)
            if src_rank == r:
                owner_images[c] = t.clone()
            else:
                t.copy_(owner_images.setdefault(c, one.images[2 * c : 2 * c + 2].clone()))

        pool.fill("cpu", rank=r, world=2, broadcast=broadcast)
    assert rendered == {0: 4, 1: 3}  # chunks 0, 2 (2 + 2 images) and 1, 3 (2 + 1)
    for pool in ranks:
        torch.testing.assert_close(pool.images, one.images, rtol=0, atol=0)
        torch.testing.assert_close(pool.styles.w1, one.styles.w1, rtol=0, atol=0)
    with pytest.raises(ValueError, match="broadcast"):
        make().fill("cpu", rank=0, world=2)


def test_validation_set_and_mean_image_split_across_processes(G):
    src = TripleSource(G, scfg(32), truncation_psi=0.7, render_batch=2)
    whole = src.fixed_set(5, seed=9, device="cpu")
    parts = [src.fixed_set(5, seed=9, device="cpu", part=shard(5, r, 2)) for r in range(2)]
    assert [len(p) for p in parts] == [2, 3]
    joined = _joined(parts)
    assert_parity(joined.ws, whole.ws, "validation w")
    assert_parity(joined.images[-1], whole.images[-1], "validation images")
    sums = [src.image_sum(6, 9, "cpu", rank=r, world=2) for r in range(2)]
    assert [c for _, c in sums] == [3, 3]
    assert_parity((sums[0][0] + sums[1][0]) / 6, src.mean_image(6, 9, "cpu"), "mean image")
    pool = CachedTripleSource(
        TripleSource(G, scfg(32), style_mixing_prob=0.0),
        size=5,
        seed=1,
        chunk=2,
        progress=False,
        storage_dtype=torch.float32,
    ).fill("cpu")
    psums = [pool.image_sum(0, 0, "cpu", rank=r, world=2) for r in range(2)]
    assert [c for _, c in psums] == [2, 3]
    assert_parity((psums[0][0] + psums[1][0]) / 5, pool.images.double().mean(0, keepdim=True), "pool mean")
