"""A narrower, lower-resolution student initialised from a MobileStyleGAN teacher by channel pruning.

Distilling from a random initialisation spends most of a short run learning what the teacher already
knows (where the face is, its pose and colours). Like the channel-pruned initialisations of StyleGAN2
compression work (e.g. CAGAN, GAN Slimming), :func:`prune_teacher` copies the teacher's layers up to
the student's resolution and keeps, per resolution, the student's number of channels:

- Channels are kept in wavelet groups: a feature map that feeds an IDWT up-sampler is read as C/4
  Haar groups (channel ``g`` and its three detail channels ``C/4 + 3g + b``), and a group is kept or
  dropped whole, so the pruned up-sampler still computes an inverse Haar transform of what it keeps.
- Importance of a group: how strongly the teacher's next block reads it. ``select="weights"`` looks at the
  weights alone, ``||P[:, g]|| * ||D[g]||`` with P the next conv1's pointwise weights and D its depthwise
  kernel (for the teacher's last level: the column norms of its final head). ``select="data"`` looks at
  what the teacher computes on sample latents: ``||P[:, g]|| * rms(y_g)``, with ``y_g`` the next conv1's
  modulated depthwise output for the group (so a group whose activations are small counts for little
  however large its weights); for the teacher's last level, the head's column norms times the rms of its
  modulated inputs. ``select="recon"`` ranks the groups by greedy forward selection: each next group is the one
  that lets least squares on the groups chosen so far reconstruct the next conv1's pointwise output
  ``P y`` best (the correlations between groups count; the teacher's last level falls back to ``data``).
  The highest-ranked groups are kept, in their original order.
- Every styled conv keeps its demodulation: on the kept inputs it renormalises each output row, so
  the pruned layers start at the teacher's activation scale. A fused teacher (demodulation folded, no
  ``style_inv``) is unfused first (:func:`mobilestylegan.io.pretrained.unfuse_state`, needs scipy).
- Heads: a teacher head in wavelet layout at a kept resolution is pruned like its conv (unfused
  teachers with auxiliary heads, or an unfused teacher's last head); every other student head starts
  at random (the published ``ffhq-1024`` student has no auxiliary heads). Noise strengths and the
  stored noise maps are copied.

With the student's channels equal to the teacher's, nothing is dropped: the student's features equal
the teacher's (tested), and at the same resolution so does its image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig

__all__ = ["SELECTIONS", "PruneError", "group_importance", "kept_channels", "prune_teacher", "wavelet_group_channels"]

SELECTIONS = ("weights", "data", "recon")


class PruneError(ValueError):
    """The teacher cannot initialise this student; the message names the mismatch and the fix."""


def wavelet_group_channels(groups: torch.Tensor, channels: int) -> torch.Tensor:
    """Channel indices (student layout: low bands, then 3 detail bands per group) of Haar ``groups`` of a
    ``channels``-channel map, in the order a map with only those groups stores them."""
    q = channels // 4
    high = (q + 3 * groups[:, None] + torch.arange(3)[None]).reshape(-1)
    return torch.cat([groups, high])


def _check(teacher: MobileSynthesisNetwork, cfg: StudentConfig) -> None:
    if not isinstance(teacher, MobileSynthesisNetwork):
        raise PruneError(
            f"student.init_from_teacher needs a MobileStyleGAN teacher (e.g. ffhq-1024); "
            f"{type(teacher).__name__} has another architecture: distil from a random "
            "initialisation instead (student.init_from_teacher=false)"
        )
    tcfg = teacher.cfg
    problems = []
    if cfg.w_dim != tcfg.w_dim:
        problems.append(f"w_dim {cfg.w_dim} != the teacher's {tcfg.w_dim}")
    if cfg.kernel_size != tcfg.kernel_size:
        problems.append(f"kernel_size {cfg.kernel_size} != the teacher's {tcfg.kernel_size}")
    if len(cfg.channels) > len(tcfg.channels):
        problems.append(f"resolution {cfg.img_resolution} above the teacher's {tcfg.img_resolution}")
    else:
        for i, (cs, ct) in enumerate(zip(cfg.channels, tcfg.channels)):
            if cs > ct or cs % 4:
                problems.append(
                    f"channels[{i}] = {cs} (resolution {4 * 2**i}) must be a multiple of 4 and at most "
                    f"the teacher's {ct}"
                )
    if problems:
        raise PruneError(
            f"cannot prune the teacher ({list(tcfg.channels)} channels, {tcfg.img_resolution} px) "
            f"into this student ({list(cfg.channels)}, {cfg.img_resolution} px): " + "; ".join(problems)
        )


def _unfused_state(teacher: MobileSynthesisNetwork) -> dict[str, torch.Tensor]:
    state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    if not teacher.fused:
        return state
    from mobilestylegan.student.unfuse import unfuse_state
    from teacher.formats.common import CheckpointError

    try:
        unfuse_state(state, MobileSynthesisNetwork(teacher.cfg), "the fused teacher")
    except (CheckpointError, ImportError) as err:
        raise PruneError(
            f"cannot recover the fused teacher's demodulation to prune it ({err}); start the student "
            "from a random initialisation (student.init_from_teacher=false)"
        ) from err
    # The folded final head is in pixel-phase layout, not wavelets: it is not copied.
    last = f"layers.{len(teacher.layers) - 1}.to_img."
    return {k: v for k, v in state.items() if not k.startswith(last)}


def _group_importance(state: dict[str, torch.Tensor], level: int, n_teacher: int, channels: int) -> torch.Tensor:
    """``[channels // 4]`` importance of the Haar groups of teacher level ``level``'s output."""
    if level < n_teacher - 1:
        conv = f"layers.{level}.conv1.conv."
        pw = state[conv + "weight_permute"][:, :, 0, 0]
        return pw.norm(dim=0) * state[conv + "weight_dw"].flatten(1).norm(dim=1)
    head = state.get(f"layers.{level - 1}.to_img.conv.weight") if level else state.get("to_img1.conv.weight")
    if head is None:  # no head to read from: keep the first groups
        return -torch.arange(channels // 4, dtype=torch.float32)
    return _group_norms(head[:, :, 0, 0].square().sum(dim=0))  # from the squared column norms


def _group_norms(squares: torch.Tensor) -> torch.Tensor:
    """``[C]`` per-channel squared norms (student layout) -> ``[C // 4]`` norms of the Haar groups."""
    c = squares.numel()
    q = c // 4
    order = squares[wavelet_group_channels(torch.arange(q), c)]
    return (order[:q] + order[q:].reshape(q, 3).sum(1)).sqrt()


@torch.no_grad()
def _data_importance(
    teacher: MobileSynthesisNetwork,
    levels: int,
    ws: torch.Tensor,
    noise: list[torch.Tensor],
    recon: bool = False,
    chunk: int = 16,
) -> list[torch.Tensor]:
    """Per teacher level ``< levels``: ``[channels // 4]`` data importance of its Haar groups (see the module)."""
    n_t = len(teacher.cfg.channels)
    gram: list[torch.Tensor] = [torch.zeros(0)] * levels  # per level: sum over pixels of z z^T, z what is read
    for start in range(0, ws.shape[0], chunk):
        w = ws[start : start + chunk]
        feats = teacher.features(w, [m[start : start + chunk] for m in noise], levels=levels)
        for i, x in enumerate(feats):
            if i < n_t - 1:  # the next block's conv1 reads group g as its input channel g
                block = teacher.layers[i]
                conv = block.conv1.conv
                up = block.up(x, w[:, 3 * i + 1])
                y = up * (conv.scale * conv.modulation(w[:, 3 * i + 1]))[:, :, None, None]
                y = F.conv2d(y, conv.weight_dw, padding=conv.padding, groups=y.shape[1])
            else:  # the teacher's final head reads every channel
                head = teacher.layers[i - 1].to_img.conv if i else teacher.to_img1.conv
                y = x * (head.scale * head.modulation(w[:, teacher.head_ws_index(i)]))[:, :, None, None]
            z = y.transpose(0, 1).reshape(y.shape[1], -1).double()
            g = z @ z.T if recon and i < n_t - 1 else torch.diag(z.square().sum(1))
            gram[i] = g if start == 0 else gram[i] + g
    out = []
    for i, g in enumerate(gram):
        if i < n_t - 1:
            conv = teacher.layers[i].conv1.conv
            readout = conv._demodulated(conv.weight_permute)[:, :, 0, 0].double()  # [O, groups]
            if recon:
                out.append(_greedy_reconstruction_rank(g, readout))
            else:  # rms of what each group sends times how strongly it is read
                out.append((readout.norm(dim=0) * (torch.diag(g) / ws.shape[0]).sqrt()).float())
        else:
            head = teacher.layers[i - 1].to_img.conv if i else teacher.to_img1.conv
            out.append(_group_norms(head.weight[:, :, 0, 0].double().square().sum(0) * torch.diag(g)).float())
    return out


def _greedy_reconstruction_rank(gram: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    """Importance (higher: kept first) of the inputs z of a linear layer ``y = P z`` by greedy forward selection: each
    step adds the input that lets least squares on the chosen inputs reconstruct y best. With ``G = sum z z^T`` the
    explained energy of a set S is ``tr(G_SS^-1 M_SS)``, ``M = G P^T P G``."""
    n = gram.shape[0]
    g = gram + 1e-9 * torch.diag(gram).mean() * torch.eye(n, dtype=gram.dtype)
    m = g @ readout.T @ readout @ g
    chosen: list[int] = []
    rank = torch.zeros(n)
    for step in range(n):
        rest = [j for j in range(n) if j not in chosen]
        sets = torch.tensor([chosen + [j] for j in rest])  # [candidates, k]
        gs = g[sets[:, :, None], sets[:, None, :]]
        ms = m[sets[:, :, None], sets[:, None, :]]
        explained = torch.linalg.solve(gs, ms).diagonal(dim1=1, dim2=2).sum(1)
        best = rest[int(explained.argmax())]
        chosen.append(best)
        rank[best] = n - step
    return rank


def group_importance(
    teacher: MobileSynthesisNetwork,
    levels: int,
    select: str = "weights",
    ws: torch.Tensor | None = None,
    noise: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Importance of the Haar groups of the teacher's first ``levels`` feature levels (``[channels // 4]`` each).

    Args:
        teacher: A MobileStyleGAN synthesis network.
        levels: How many levels (the student's).
        select: ``weights``, ``data`` or ``recon`` (see the module).
        ws: ``[N, num_ws, w_dim]`` teacher W+ of the sample latents (``data`` and ``recon``).
        noise: The teacher's noise maps for them (``data`` and ``recon``; None: its stored maps).
    """
    return _importance(teacher, levels, select, ws, noise, None)


def _importance(
    teacher: MobileSynthesisNetwork,
    levels: int,
    select: str,
    ws: torch.Tensor | None,
    noise: list[torch.Tensor] | None,
    state: dict[str, torch.Tensor] | None,
) -> list[torch.Tensor]:
    """:func:`group_importance`, reusing the teacher's unfused ``state`` when the caller has it."""
    if select not in SELECTIONS:
        raise PruneError(f"channel selection must be one of {SELECTIONS}, got {select!r}")
    n_t = len(teacher.cfg.channels)
    if select == "weights":
        t = _unfused_state(teacher) if state is None else state
        return [_group_importance(t, i, n_t, teacher.cfg.channels[i]) for i in range(levels)]
    if ws is None:
        raise PruneError("data-driven channel selection needs sample latents (ws)")
    if noise is None:
        noise = teacher.make_noise(ws.shape[0], "const")
    return _data_importance(teacher, levels, ws, noise, recon=select == "recon")


def kept_channels(
    teacher: MobileSynthesisNetwork,
    cfg: StudentConfig,
    select: str = "weights",
    ws: torch.Tensor | None = None,
    noise: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Per student level, the teacher channels :func:`prune_teacher` keeps, in the student's layout order (student
    channel ``j`` of level ``i`` is teacher channel ``kept[i][j]``). Arguments and errors as :func:`prune_teacher`."""
    _check(teacher, cfg)
    return _kept(teacher, cfg, _importance(teacher, len(cfg.channels), select, ws, noise, None))


def _kept(teacher: MobileSynthesisNetwork, cfg: StudentConfig, importance: list[torch.Tensor]) -> list[torch.Tensor]:
    keep = []
    for i, cs in enumerate(cfg.channels):
        ct = teacher.cfg.channels[i]
        groups = importance[i].argsort(descending=True, stable=True)[: cs // 4].sort().values
        keep.append(wavelet_group_channels(groups, ct))
    return keep


def prune_teacher(
    teacher: MobileSynthesisNetwork,
    cfg: StudentConfig,
    select: str = "weights",
    ws: torch.Tensor | None = None,
    noise: list[torch.Tensor] | None = None,
) -> MobileSynthesisNetwork:
    """A new student synthesis network (``cfg``, unfused, trainable) initialised from ``teacher``.

    Args:
        teacher: A MobileStyleGAN synthesis network at least as wide and large as the student.
        cfg: The student's architecture.
        select: How the kept Haar groups are chosen: ``weights``, ``data`` or ``recon`` (see the module).
        ws: ``data`` and ``recon``: teacher W+ ``[N, num_ws, w_dim]`` of sample latents (a hundred or so).
        noise: ``data`` and ``recon``: the teacher's noise maps for them (None: its stored maps).

    Raises:
        PruneError: The teacher is not a MobileStyleGAN synthesis network, or the student is wider or
            larger than it at some resolution, or has another ``w_dim`` or kernel size, or ``select`` is unknown.
    """
    _check(teacher, cfg)
    t = _unfused_state(teacher)
    keep = _kept(teacher, cfg, _importance(teacher, len(cfg.channels), select, ws, noise, t))

    student = MobileSynthesisNetwork(cfg)
    new: dict[str, torch.Tensor] = {}

    def styled(prefix: str, outs: torch.Tensor, ins: torch.Tensor, depthwise: bool) -> None:
        conv = prefix + "conv."
        if depthwise:
            new[conv + "weight_dw"] = t[conv + "weight_dw"][ins]
            new[conv + "weight_permute"] = t[conv + "weight_permute"][outs][:, ins]
        else:
            new[conv + "weight"] = t[conv + "weight"][outs][:, ins]
        new[conv + "style_inv"] = t[conv + "style_inv"][:, :, ins]
        new[conv + "modulation.weight"] = t[conv + "modulation.weight"][ins]
        new[conv + "modulation.bias"] = t[conv + "modulation.bias"][ins]
        new[prefix + "bias"] = t[prefix + "bias"][:, outs]
        new[prefix + "noise.weight"] = t[prefix + "noise.weight"]
        new[prefix + "noise_const"] = t[prefix + "noise_const"]

    def head(prefix: str, ins: torch.Tensor) -> None:
        if prefix + "conv.weight" in t:
            new[prefix + "conv.weight"] = t[prefix + "conv.weight"][:, ins]
            new[prefix + "conv.modulation.weight"] = t[prefix + "conv.modulation.weight"][ins]
            new[prefix + "conv.modulation.bias"] = t[prefix + "conv.modulation.bias"][ins]
            new[prefix + "bias"] = t[prefix + "bias"]

    new["input.input"] = t["input.input"][:, keep[0]]
    styled("conv1.", keep[0], keep[0], depthwise=False)
    head("to_img1.", keep[0])
    for b in range(len(cfg.channels) - 1):
        k_in, k_out = keep[b], keep[b + 1]
        groups_in = k_in[: len(k_in) // 4]  # the low-band channel of a group is its group index
        p = f"layers.{b}."
        new[p + "up.modulation.weight"] = t[p + "up.modulation.weight"][k_in]
        new[p + "up.modulation.bias"] = t[p + "up.modulation.bias"][k_in]
        styled(p + "conv1.", k_out, groups_in, depthwise=True)
        styled(p + "conv2.", k_out, k_out, depthwise=True)
        head(p + "to_img.", k_out)

    own = student.state_dict()
    state = {k: (new[k].to(own[k].dtype).clone() if k in new else v) for k, v in own.items()}
    for k in new:
        if k in own and new[k].shape != own[k].shape:  # a bug here, never the user's input
            raise AssertionError(f"prune_teacher: {k} {tuple(new[k].shape)} vs {tuple(own[k].shape)}")
    student.load_state_dict(state, strict=True)
    return student
