"""Closed-form heads (mobilestylegan/distill/heads.py) and data-driven channel selection (distill/prune.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from mobilestylegan.distill.heads import NormalEquations, solve_heads
from mobilestylegan.distill.prune import PruneError, group_importance, prune_teacher, wavelet_group_channels
from mobilestylegan.distill.triples import Triple
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.wavelets import dwt
from teacher.numerics import assert_parity
from tests.helpers.teachers import randomize

W_DIM = 16


def _student(seed: int = 3) -> MobileSynthesisNetwork:
    net = MobileSynthesisNetwork(StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(16, 16, 8)))
    return randomize(net, seed=seed).eval()


def _triples(net: MobileSynthesisNetwork, n: int, seed: int = 0, chunk: int = 4) -> list[Triple]:
    """Targets the heads cannot fit exactly: a fixed random image pyramid plus a part that depends on w."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(0, n, chunk):
        w = torch.randn(chunk, W_DIM, generator=g)
        ws = w[:, None].expand(-1, net.num_ws, -1)
        noise = net.make_noise(chunk, "random", generator=g)
        finest = torch.randn(chunk, 3, 32, 32, generator=g) + w[:, :3, None, None]
        images = [torch.nn.functional.avg_pool2d(finest, 32 // r) for r in (8, 16, 32)]
        out.append(Triple(ws, noise, images, [dwt(i) for i in images]))
    return out


def _lstsq_heads(net: MobileSynthesisNetwork, triples: list[Triple]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per head ``(W [12, C], b [12])`` by ``torch.linalg.lstsq`` on all rows at once, in float64."""
    with torch.no_grad():
        feats = [net.features(t.ws, t.noise) for t in triples]
    out = []
    for i in range(len(net.cfg.channels)):
        x = torch.cat([f[i].permute(0, 2, 3, 1).reshape(-1, f[i].shape[1]) for f in feats]).double()
        y = torch.cat([t.wavelets[i].permute(0, 2, 3, 1).reshape(-1, 12) for t in triples]).double()
        x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        beta = torch.linalg.lstsq(x1, y).solution
        out.append((beta[:-1].T, beta[-1]))
    return out


def _head_mse(net: MobileSynthesisNetwork, triples: list[Triple]) -> list[float]:
    with torch.no_grad():
        errs = [
            [(a - b).square().mean() for a, b in zip(net(t.ws, noise=t.noise, return_wavelets=True)[1], t.wavelets)]
            for t in triples
        ]
    return [float(sum(e[i] for e in errs) / len(errs)) for i in range(len(errs[0]))]


def test_normal_equations_reach_the_least_squares_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 7, generator=g) * torch.tensor([1, 2, 3, 4, 5, 6, 1e-2])
    y = x @ torch.randn(7, 3, generator=g) + 0.5 + 0.1 * torch.randn(500, 3, generator=g)
    x, y = x.double(), y.double()  # float64 rows: products in float64, so the residual is exact to 1e-6
    eq = NormalEquations(7, 3)
    for xs, ys in zip(x.split(128), y.split(128)):  # chunked accumulation == one big solve
        eq.add(xs, ys)
    weight, bias, mse = eq.solve(ridge=0.0)
    x1 = torch.cat([x, torch.ones(500, 1, dtype=x.dtype)], 1)
    beta = torch.linalg.lstsq(x1, y).solution
    assert_parity(weight, beta[:-1].T, "normal-equation weights vs lstsq")
    assert_parity(bias, beta[-1], "normal-equation bias vs lstsq")
    resid = (x1 @ beta - y).square().mean()
    assert abs(mse - float(resid)) <= 1e-6 * float(resid)


def test_solved_heads_are_the_least_squares_heads_and_beat_random_ones():
    net = _student()
    triples = _triples(net, 16)
    before = _head_mse(net, triples)
    solved = solve_heads(net, triples, ridge=0.0)
    after = _head_mse(net, triples)
    for i, (w_ref, b_ref) in enumerate(_lstsq_heads(net, triples)):
        head = net.heads()[i]
        # Neutral modulation: the style scale is 1 for every w, so the head is a plain 1x1 conv.
        assert torch.count_nonzero(head.conv.modulation.weight) == 0
        assert torch.equal(head.conv.modulation.bias, torch.ones_like(head.conv.modulation.bias))
        assert_parity(head.conv.weight[:, :, 0, 0] * head.conv.scale, w_ref, f"head {i} weight vs lstsq")
        assert_parity(head.bias.reshape(-1), b_ref, f"head {i} bias vs lstsq")
        assert after[i] < 0.5 * before[i], (i, before[i], after[i])
        # What solve_heads reports is the error the network now makes.
        assert abs(solved.mse[i] - after[i]) <= 1e-4 * after[i], (solved.mse[i], after[i])
    assert solved.samples == 16 and solved.resolutions == [8, 16, 32]
    assert solved.psnr[0] == pytest.approx(10 * torch.log10(torch.tensor(4 / after[0])).item(), abs=1e-3)


def test_sums_over_processes_equal_one_solve():
    """Two 'processes' with half the triples each, their normal equations summed, solve what one does."""
    triples = _triples(_student(), 16)
    one, two = _student(), _student()
    solve_heads(one, triples)
    halves = [triples[:2], triples[2:]]
    partial = []

    def fake_all_reduce(t: torch.Tensor) -> None:
        partial.append(t)

    # Accumulate the second half's sums, then add them into the first process's in its all_reduce.
    other = _student()
    solve_heads(other, halves[1], all_reduce=fake_all_reduce)
    sums = iter(list(partial))
    solve_heads(two, halves[0], all_reduce=lambda t: t.add_(next(sums)))
    for a, b in zip(one.heads(), two.heads()):
        assert_parity(b.conv.weight, a.conv.weight, "head solved from two summed halves")


def test_solve_heads_refuses_a_fused_student():
    net = _student().fuse()
    with pytest.raises(ValueError, match="unfused student"):
        solve_heads(net, [])


# -- data-driven channel selection ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def T() -> MobileSynthesisNetwork:
    net = MobileSynthesisNetwork(StudentConfig(img_resolution=64, w_dim=W_DIM, channels=(16, 16, 16, 8)))
    return randomize(net, seed=3).eval().requires_grad_(False)


def test_data_selection_drops_silent_groups_the_weights_rule_keeps(T):
    """Level 0's groups 1 and 3 carry nothing (their channels are zero) but block 0 reads them with large
    weights: the weights rule keeps them, the data rule drops them."""
    t = copy.deepcopy(T)
    silent = wavelet_group_channels(torch.tensor([1, 3]), 16)
    with torch.no_grad():
        t.conv1.conv.weight[silent] = 0
        t.conv1.bias[:, silent] = 0
        t.conv1.noise.weight.zero_()
        t.layers[0].conv1.conv.weight_permute[:, [1, 3]] *= 100
    g = torch.Generator().manual_seed(1)
    ws = torch.randn(8, W_DIM, generator=g)[:, None].expand(-1, t.num_ws, -1)
    by_data = group_importance(t, 4, "data", ws)
    by_weights = group_importance(t, 4, "weights")
    assert by_data[0][[1, 3]].max() < 1e-6 * by_data[0].max()
    assert set(by_weights[0].argsort(descending=True)[:2].tolist()) == {1, 3}
    cfg = StudentConfig(img_resolution=64, w_dim=W_DIM, channels=(8, 8, 8, 4))
    S = prune_teacher(t, cfg, select="data", ws=ws)
    kept = wavelet_group_channels(torch.tensor([0, 2]), 16)
    torch.testing.assert_close(S.input.input, t.input.input[:, kept], rtol=0, atol=0)
    assert [x.shape for x in by_data] == [(4,), (4,), (4,), (2,)]


def test_data_selection_of_a_fused_teacher_equals_the_unfused_one(T):
    g = torch.Generator().manual_seed(2)
    ws = torch.randn(4, W_DIM, generator=g)[:, None].expand(-1, T.num_ws, -1)
    a = group_importance(T, 4, "data", ws)
    b = group_importance(copy.deepcopy(T).fuse(), 4, "data", ws)
    for x, y in zip(a, b):
        assert_parity(y, x, "data importance, fused vs unfused teacher")


def test_selection_errors(T):
    cfg = StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(8, 8, 8))
    with pytest.raises(PruneError, match="must be one of"):
        prune_teacher(T, cfg, select="norms")
    with pytest.raises(PruneError, match="needs sample latents"):
        prune_teacher(T, cfg, select="data")


def test_reconstruction_rank_skips_a_duplicate_input():
    """Inputs a, a (a copy) and b (weaker, independent), read by P = I: the energy rule ranks the two copies first,
    the reconstruction rule takes one copy, then b (the copy adds nothing that least squares cannot rebuild)."""
    from mobilestylegan.distill.prune import _greedy_reconstruction_rank

    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(1000, generator=g, dtype=torch.float64),
        0.3 * torch.randn(1000, generator=g, dtype=torch.float64),
    )
    z = torch.stack([a, a, b])
    rank = _greedy_reconstruction_rank(z @ z.T, torch.eye(3, dtype=torch.float64))
    top2 = set(rank.argsort(descending=True)[:2].tolist())
    assert 2 in top2 and len(top2 & {0, 1}) == 1, rank


def test_recon_selection_prunes_a_teacher(T):
    g = torch.Generator().manual_seed(2)
    ws = torch.randn(4, W_DIM, generator=g)[:, None].expand(-1, T.num_ws, -1)
    ranks = group_importance(T, 3, "recon", ws)
    assert [sorted(r.tolist()) for r in ranks[:3]] == [[1.0, 2.0, 3.0, 4.0]] * 3  # a full ranking per level
    S = prune_teacher(T, StudentConfig(img_resolution=32, w_dim=W_DIM, channels=(8, 8, 8)), select="recon", ws=ws)
    with torch.no_grad():
        img = S(ws[:, : S.num_ws], noise_mode="const")
    assert img.shape == (4, 3, 32, 32) and torch.isfinite(img).all()
