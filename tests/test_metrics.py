"""Evaluation maths against independent references (scipy, brute force), the FID Inception network and the
perceptual distance, on random weights and tiny sizes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from mobilestylegan.metrics import measures as M
from mobilestylegan.nets import inception as inc
from mobilestylegan.nets import vgg as vgg_mod
from mobilestylegan.nets.inception import FIDInceptionV3, InceptionWeightsNotFoundError, load_inception, preprocess
from mobilestylegan.nets.vgg import VGG16Full, load_vgg16_full
from teacher.formats.common import CheckpointError
from teacher.numerics import assert_parity, psnr_db
from tests.helpers.vgg import fake_state, save_hashed

pytestmark = pytest.mark.usefixtures("one_thread", "no_weight_files")


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(inc.INCEPTION_ENV, "/nonexistent/pt_inception.pth")
        model = load_inception(None, allow_random_weights=True)[0]
    assert model.random_weights
    return model


def smooth_images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``[n, 3, size, size]`` in [-1, 1]: random low-frequency colour fields (image-like statistics)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def scipy_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ------------------------------------------------------------------------------------------------ FID


def test_fid_of_a_set_against_itself_is_zero(inception):
    feats = inception(preprocess(smooth_images(24), "clean", 75)).double().numpy()  # [24, 2048]
    assert feats.shape == (24, 2048) and feats.std() > 1e-3
    assert M.fid_from_features(feats, feats) < 1e-6
    small = feats[:, :16]  # n > d: the d x d eigendecomposition route
    assert M.fid_from_features(small, small) < 1e-6
    assert M.frechet_distance(*M.feature_stats(small), *M.feature_stats(small)) < 1e-6


def test_fid_matches_scipy_closed_form_for_gaussian_features():
    rng = np.random.default_rng(0)
    d = 24
    a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d)) * 0.5
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) + 1.0
    s1, s2 = a1 @ a1.T / d, a2 @ a2.T / d + 0.1 * np.eye(d)
    # Population parameters: our eigh-based formula against scipy's sqrtm.
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_fid(mu1, s1, mu2, s2), rel=1e-9)
    # Samples from the two Gaussians: stats route, low-rank route and scipy agree.
    x = rng.multivariate_normal(mu1, s1, size=3000)
    y = rng.multivariate_normal(mu2, s2, size=2000)
    ref = scipy_fid(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert M.frechet_distance(*M.feature_stats(x), *M.feature_stats(y)) == pytest.approx(ref, rel=1e-9)
    assert M.fid_from_features(x, y) == pytest.approx(ref, rel=1e-9)
    # ... and the sample FID approaches the population value.
    assert M.fid_from_features(x, y) == pytest.approx(M.frechet_distance(mu1, s1, mu2, s2), rel=0.05)
    # n <= d: the exact low-rank SVD route equals the d x d route (rank-deficient covariances).
    xs, ys = x[:15] * 2, y[:10]
    ref_small = scipy_fid(xs.mean(0), np.cov(xs, rowvar=False), ys.mean(0), np.cov(ys, rowvar=False))
    assert M.fid_from_features(xs, ys) == pytest.approx(ref_small, rel=1e-6)
    assert M.frechet_distance(*M.feature_stats(xs), *M.feature_stats(ys)) == pytest.approx(ref_small, rel=1e-6)


def test_fid_increases_monotonically_with_noise(inception):
    clean = smooth_images(32, seed=1)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(clean.shape, generator=g)
    ref = inception(preprocess(clean, "clean", 75)).double().numpy()
    fids = []
    for sigma in (0.0, 0.05, 0.1, 0.2, 0.4):
        noisy = (clean + sigma * noise).clamp(-1, 1)
        fids.append(M.fid_from_features(ref, inception(preprocess(noisy, "clean", 75)).double().numpy()))
    assert fids[0] < 1e-6
    assert all(b > a for a, b in zip(fids, fids[1:])), fids
    assert fids[-1] > 10 * fids[1]


# ------------------------------------------------------------------------------------------------ KID


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    k = lambda a, b: (float(np.dot(a, b)) / len(a) + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_brute_force_unbiased_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.3
    mean, std, s = M.kid(x, y, num_subsets=3, subset_size=50)  # subsets clipped to n: every subset is the whole set
    assert s == 12 and std == pytest.approx(0, abs=1e-12)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)


def test_kid_is_unbiased_on_identical_distributions():
    rng = np.random.default_rng(4)
    d = 64
    x, y = rng.normal(size=(4000, d)), rng.normal(size=(4000, d))
    mean, std, _ = M.kid(x, y, num_subsets=50, subset_size=200, seed=0)
    assert abs(mean) < 3 * std / np.sqrt(50)  # zero within the standard error of the subset mean
    assert abs(mean) < 0.01
    shifted, _, _ = M.kid(x, y + 0.5, num_subsets=50, subset_size=200, seed=0)
    assert shifted > 0.1 and shifted > 20 * std


# ------------------------------------------------------------------------------------- precision/recall


def brute_force_pr(gen: np.ndarray, ref: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the sample itself

    def cover(q, r, rad):
        return float(np.mean([(np.linalg.norm(r - p, axis=1) <= rad).any() for p in q]))

    return cover(gen, ref, radii(ref)), cover(ref, gen, radii(gen))


def test_precision_recall_match_brute_force():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(60, 8))
    gen = np.concatenate([rng.normal(size=(30, 8)) * 0.5, rng.normal(size=(20, 8)) + 4])  # half inside, half off
    p, r = M.precision_recall(gen, ref, k=3, batch=7, dtype=torch.float64)
    bp, br = brute_force_pr(gen, ref, 3)
    assert (p, r) == (pytest.approx(bp), pytest.approx(br))
    assert 0.5 <= p < 0.7 and 0 < r < 1
    assert M.precision_recall(ref, ref) == (1.0, 1.0)
    assert M.precision_recall(ref + 100, ref) == (0.0, 0.0)


# ------------------------------------------------------------------------------------------- PPL, PSNR


def test_ppl_filter_and_psnr():
    d = np.concatenate([np.zeros(5), np.full(990, 2.0), np.full(5, 1e9)])  # outliers beyond the 1st / 99th percentiles
    assert M.ppl_filtered_mean(d) == pytest.approx(2.0)
    assert M.ppl_filtered_mean(np.arange(101.0)) == pytest.approx(np.arange(1.0, 100.0).mean())
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[1] += 0.2  # 0.1 on [0, 1]: MSE 0.01 -> 20 dB
    assert psnr_db(a, b).tolist() == pytest.approx([100.0, 20.0], abs=1e-4)


# ------------------------------------------------------------------------------------------ inception


def test_inception_layout_and_forward_shape(inception):
    sd = inception.state_dict()
    assert len(sd) == 566
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Conv2d_1a_3x3.bn.running_var"].shape) == (32,)
    assert tuple(sd["Mixed_5b.branch_pool.conv.weight"].shape) == (32, 192, 1, 1)
    assert tuple(sd["Mixed_6e.branch7x7dbl_5.conv.weight"].shape) == (192, 192, 1, 7)
    assert tuple(sd["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape) == (384, 384, 3, 1)
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    n_params = sum(p.numel() for p in inception.parameters())
    assert n_params == 23_850_960  # torchvision's Inception-v3 without aux head (23,834,568) + 8 more classes
    out = inception(torch.rand(3, 3, 75, 75))
    assert out.shape == (3, 2048) and torch.isfinite(out).all() and out.std() > 0
    with pytest.raises(ValueError, match="H, W >= 75"):
        inception(torch.rand(1, 3, 64, 64))


def test_inception_strict_load_and_checksum(tmp_path, monkeypatch):
    model = load_inception(None, allow_random_weights=True, seed=7)[0]
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / inc.INCEPTION_FILENAME
    digest = save_hashed(state, path)
    with pytest.raises(CheckpointError, match="6726825d") as err:
        load_inception(path)
    assert digest in str(err.value) and "pytorch-fid/releases" in str(err.value)
    monkeypatch.setattr(inc, "INCEPTION_SHA256_PREFIX", digest[:8])
    loaded, weights_id = load_inception(path)
    assert weights_id == digest and not loaded.random_weights
    x = torch.rand(2, 3, 80, 80)
    assert torch.equal(loaded(x), model(x))
    del state["Mixed_7c.branch_pool.conv.weight"]
    save_hashed(state, path)
    monkeypatch.setattr(inc, "INCEPTION_SHA256_PREFIX", "")
    with pytest.raises(CheckpointError, match="missing key.*Mixed_7c.branch_pool.conv.weight"):
        load_inception(path)


def test_missing_inception_weights_name_file_url_and_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv(inc.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("MOBILESTYLEGAN_CACHE", str(tmp_path))
    with pytest.raises(InceptionWeightsNotFoundError) as err:
        load_inception(None)
    msg = str(err.value)
    assert str(tmp_path / "weights" / inc.INCEPTION_FILENAME) in msg
    assert inc.INCEPTION_URL in msg and "6726825d" in msg and "MOBILESTYLEGAN_INCEPTION" in msg
    with pytest.raises(InceptionWeightsNotFoundError):  # a named file is never replaced by random weights
        load_inception(tmp_path / "nope.pth", allow_random_weights=True)


def test_preprocess_conventions():
    u8 = torch.randint(0, 256, (2, 3, 80, 80), generator=torch.Generator().manual_seed(0)).float()
    img = u8 / 127.5 - 1
    for mode in ("clean", "legacy"):  # same size: both conventions give back u / 255
        assert_parity(preprocess(img, mode, 80), u8 / 255, f"{mode} preprocess at the same size vs u / 255")
    clean, legacy = preprocess(img, "clean", 299), preprocess(img, "legacy", 299)
    assert clean.shape == legacy.shape == (2, 3, 299, 299)
    assert 0 <= clean.min() and clean.max() <= 1
    assert (clean - legacy).abs().mean() > 1e-3  # bicubic vs bilinear really differ
    # clean quantises first: a sub-quantum change does not move its output, but moves legacy's.
    nudged = img + 0.001
    assert torch.equal(preprocess(nudged, "clean", 299), clean)
    assert not torch.equal(preprocess(nudged, "legacy", 299), legacy)


# ----------------------------------------------------------------------------------- VGG, perceptual


def test_vgg16_full_loads_torchvision_keys(tmp_path, monkeypatch):
    state = fake_state(random_up_to=28)
    path = tmp_path / "vgg16-397923af.pth"
    digest = save_hashed(state, path)
    monkeypatch.setattr(vgg_mod, "VGG16_SHA256_PREFIX", digest[:8])
    net, weights_id = load_vgg16_full(path, classifier=False)
    assert weights_id == digest
    assert set(net.state_dict()) == {k for k in state if k.startswith("features.")}
    feats = net.relu_features(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    full, _ = load_vgg16_full(path)
    assert set(full.state_dict()) == {k for k in state if not k.startswith("classifier.6")}
    assert full.fc2(torch.rand(2, 3, 32, 32)).shape == (2, 4096)
    # The first four layers are the perceptual loss's network, weight for weight.
    small = vgg_mod.load_vgg16(path)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for a, b in zip(small(x), net.relu_features(x), strict=False):  # small: the first four of the five
        assert_parity(a, b, "VGG16Features vs VGG16Full.relu_features")


def test_perceptual_distance(tmp_path):
    vgg = load_vgg16_full(None, allow_random_weights=True, classifier=False)[0]
    unit = M.PerceptualDistance(vgg, None, size=32)
    a, b = smooth_images(2, 48, seed=3), smooth_images(2, 48, seed=4)
    assert unit.kind == "vgg-unit"
    assert unit(a, a).tolist() == [0.0, 0.0]
    d = unit(a, b)
    assert (d > 0).all()
    assert_parity(unit(b, a), d, "unit distance, arguments swapped")
    # LPIPS heads read by path (never importing lpips); all-ones heads reproduce the unit distance.
    heads_file = tmp_path / "vgg.pth"
    torch.save(
        {f"lin{i}.model.1.weight": torch.ones(1, c, 1, 1) for i, c in enumerate(vgg_mod.FULL_FEATURE_CHANNELS)},
        heads_file,
    )
    assert M.find_lpips_weights(heads_file) == heads_file
    lp = M.PerceptualDistance(vgg, M.load_lpips_heads(heads_file), size=32)
    assert lp.kind == "lpips-vgg-v0.1"
    assert_parity(lp(a, b), d, "LPIPS with all-ones heads vs unit distance")
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, heads_file)
    with pytest.raises(CheckpointError, match="missing"):
        M.load_lpips_heads(heads_file)
    with pytest.raises(FileNotFoundError, match="lpips"):
        M.find_lpips_weights(tmp_path / "absent.pth")


def test_vgg16_full_random_weights_are_marked():
    net, weights_id = load_vgg16_full(None, allow_random_weights=True, classifier=False)
    assert isinstance(net, VGG16Full) and net.random_weights and weights_id == "random-seed0"
    assert Path(vgg_mod.default_vgg16_path()).name == "vgg16-397923af.pth"
