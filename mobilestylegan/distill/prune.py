"""A narrower, lower-resolution student initialised from a MobileStyleGAN teacher by channel pruning.

Distilling from a random initialisation spends most of a short run learning what the teacher already
knows (where the face is, its pose and colours). Like the channel-pruned initialisations of StyleGAN2
compression work (e.g. CAGAN, GAN Slimming), :func:`prune_teacher` copies the teacher's layers up to
the student's resolution and keeps, per resolution, the student's number of channels:

- Channels are kept in wavelet groups: a feature map that feeds an IDWT up-sampler is read as C/4
  Haar groups (channel ``g`` and its three detail channels ``C/4 + 3g + b``), and a group is kept or
  dropped whole, so the pruned up-sampler still computes an inverse Haar transform of what it keeps.
- Importance of a group: how strongly the teacher's next block reads it, ``||P[:, g]|| * ||D[g]||``
  with P the next conv1's pointwise weights and D its depthwise kernel (for the teacher's last level:
  the column norms of its final head). The largest groups are kept, in their original order.
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

from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig

__all__ = ["PruneError", "prune_teacher", "wavelet_group_channels"]


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
    cols = head[:, :, 0, 0].square().sum(dim=0)  # [C]: squared column norms
    q = channels // 4
    order = cols[wavelet_group_channels(torch.arange(q), channels)]
    return (order[:q] + order[q:].reshape(q, 3).sum(1)).sqrt()


def prune_teacher(teacher: MobileSynthesisNetwork, cfg: StudentConfig) -> MobileSynthesisNetwork:
    """A new student synthesis network (``cfg``, unfused, trainable) initialised from ``teacher``.

    Raises:
        PruneError: The teacher is not a MobileStyleGAN synthesis network, or the student is wider or
            larger than it at some resolution, or has another ``w_dim`` or kernel size.
    """
    _check(teacher, cfg)
    t = _unfused_state(teacher)
    n_t = len(teacher.cfg.channels)
    keep = []  # per student level: kept teacher channels, in the student's layout order
    for i, cs in enumerate(cfg.channels):
        ct = teacher.cfg.channels[i]
        imp = _group_importance(t, i, n_t, ct)
        groups = imp.argsort(descending=True, stable=True)[: cs // 4].sort().values
        keep.append(wavelet_group_channels(groups, ct))

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
