"""NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles (``network-snapshot-*.pkl``, ``ffhq.pkl``).

The file is ``pickle.dump(dict(G=..., D=..., G_ema=..., augment_pipe=..., training_set_kwargs=...))``
in which every network module is a *persistent* object, pickled as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class',
version=6, module_src=<source of the whole networks module>, class_name=..., state=<the module's
__dict__>)``. The official loader ``exec``s ``module_src``. This reader answers that global with a
stub that keeps ``class_name`` and ``state`` and never looks at the source; tensors come back through
the checked torch globals of :mod:`teacher.formats.safe_pickle`; every other global is refused.

From a module state we read ``_parameters``, ``_buffers`` and ``_modules`` (recursively: a flat state
dict) and ``_init_kwargs`` (the constructor arguments). NVIDIA's names are ours: ``mapping.fc{i}``,
``mapping.w_avg``, ``synthesis.b4.const``, ``synthesis.b{r}.{conv0,conv1,torgb}.*`` (``noise_strength``
[], ``noise_const`` [r, r]); D ``b{R}.fromrgb``, ``b{r}.{conv0,conv1,skip}``, ``b4.{conv,fc,out}``. The
constant ``resample_filter`` buffers are checked against the filter taps and dropped.

The architecture comes from tensor shapes (resolutions from ``synthesis.b{r}``, channels from conv
weights, mapping depth from ``mapping.fc{i}``, w_dim, mbstd channels from ``b4.conv``) and is
cross-checked with ``_init_kwargs`` (``synthesis_kwargs`` nested as in stylegan2-ada-pytorch, or flat as
in the stylegan3 repository), which also gives ``conv_clamp``, the mapping lr multiplier and the
minibatch-stddev group size (``None``, one group over the whole minibatch, as legacy.py writes for
converted TF discriminators, is kept as None: one group over the whole batch). Refused: conditional networks,
synthesis architectures other than ``skip``, discriminators other than ``resnet``, StyleGAN3
(alias-free) synthesis networks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig, default_channels
from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict, malformed_settings
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.formats.safe_pickle import (
    CONTAINER_GLOBALS,
    NUMPY_GLOBALS,
    TORCH_TENSOR_GLOBALS,
    contains_marker,
    looks_like_pickle,
    plain,
    restricted_load,
)
from teacher.ops import setup_filter

SOURCE_FORMAT = "nvidia-pkl"
_MARKER = b"torch_utils.persistence"
_DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)


@dataclass
class PersistentModule:
    """What ``_reconstruct_persistent_obj(meta)`` gives back here: the class name and the module state."""

    class_name: str
    state: dict[str, Any]

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kw = self.state.get("_init_kwargs")
        return dict(kw) if isinstance(kw, dict) else {}

    def child(self, name: str) -> PersistentModule | None:
        mods = self.state.get("_modules")
        sub = mods.get(name) if isinstance(mods, dict) else None
        return sub if isinstance(sub, PersistentModule) else None


def _reconstruct_persistent_obj(meta: Any) -> PersistentModule:
    """Stub for ``torch_utils.persistence._reconstruct_persistent_obj``: ``meta['module_src']`` is ignored."""
    if not (
        isinstance(meta, dict)
        and meta.get("type") == "class"
        and isinstance(meta.get("class_name"), str)
        and isinstance(meta.get("state"), dict)
    ):
        raise CheckpointError(
            "malformed torch_utils.persistence object (expected meta with type='class', class_name and a state dict)"
        )
    return PersistentModule(meta["class_name"], meta["state"])


_WHITELIST = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    **TORCH_TENSOR_GLOBALS,
    **NUMPY_GLOBALS,
    **CONTAINER_GLOBALS,
}
_HINTS = {("dnnlib.tflib.network", "Network"): " (a TensorFlow StyleGAN2 pickle: the tensorflow-pkl reader reads it)"}


def sniff(path: str, head: bytes) -> bool:
    """A pickle that references ``torch_utils.persistence`` (looked for in the first MiB)."""
    return looks_like_pickle(head) and contains_marker(path, head, _MARKER)


def read(path: str) -> Checkpoint:
    """Read ``G_ema`` (else ``G``) and ``D`` of an NVIDIA pickle into the native layout."""
    what = f"NVIDIA pickle {path}"
    data = restricted_load(path, _WHITELIST, what, _HINTS)
    if isinstance(data, PersistentModule):  # a bare pickled network
        data = {"D" if data.class_name == "Discriminator" else "G": data}
    if not isinstance(data, dict):
        raise CheckpointError(f"{what}: expected a dict of networks, found a {type(data).__name__}")
    g_key = next((k for k in ("G_ema", "G") if isinstance(data.get(k), PersistentModule)), None)
    d_mod = data.get("D") if isinstance(data.get("D"), PersistentModule) else None
    if g_key is None and d_mod is None:
        raise CheckpointError(f"{what}: holds no G_ema, G or D network (keys: {sorted(map(str, data))[:10]})")
    ckpt = Checkpoint(
        SOURCE_FORMAT, extra={"generator_key": g_key, "training_set_kwargs": plain(data.get("training_set_kwargs"))}
    )
    with malformed_settings(what):  # e.g. _init_kwargs of the wrong types
        if g_key is not None:
            ckpt.g_config, ckpt.g_state = _generator(data[g_key], f"{what} [{g_key}]")
            ckpt.extra["g_init_kwargs"] = plain(data[g_key].init_kwargs)
        if d_mod is not None:
            ckpt.d_config, ckpt.d_state = _discriminator(d_mod, f"{what} [D]")
            ckpt.extra["d_init_kwargs"] = plain(d_mod.init_kwargs)
    return ckpt


def _flatten(
    module: PersistentModule, what: str, prefix: str = "", out: dict | None = None, depth: int = 0
) -> dict[str, torch.Tensor]:
    """``state_dict()`` of a stored module tree: persistent parameters and buffers, recursively."""
    out = {} if out is None else out
    if depth > 16:
        raise CheckpointError(f"{what}: module tree nested deeper than 16 levels at {prefix!r}")
    state = module.state
    non_persistent = state.get("_non_persistent_buffers_set")
    non_persistent = non_persistent if isinstance(non_persistent, (set, frozenset)) else set()
    for group in ("_parameters", "_buffers", "_modules"):
        entries = state.get(group, {})
        if not isinstance(entries, dict):
            raise CheckpointError(f"{what}: {prefix or 'the root module'} has a malformed {group}")
        for name, value in entries.items():
            if value is None or (group == "_buffers" and name in non_persistent):
                continue
            if group == "_modules":
                if not isinstance(value, PersistentModule):
                    raise CheckpointError(
                        f"{what}: {prefix}{name} is a {type(value).__name__}, not a persistent module"
                    )
                _flatten(value, what, f"{prefix}{name}.", out, depth + 1)
            elif isinstance(value, torch.Tensor) and value.is_floating_point():
                out[f"{prefix}{name}"] = value
            else:
                raise CheckpointError(
                    f"{what}: {prefix}{name} is a {type(value).__name__} "
                    f"{getattr(value, 'dtype', '')}, not a floating-point tensor"
                )
    return out


def _first(sources: list[Any], key: str, default: Any = None) -> Any:
    """The value of ``key`` in the first of ``sources`` (dicts) that has it."""
    return next((s[key] for s in sources if isinstance(s, dict) and key in s), default)


def _refuse(what: str, checks: list[tuple[bool, str]]) -> None:
    for failed, why in checks:
        if failed:
            raise CheckpointError(f"{what}: {why}")


def _drop_filters(flat: dict[str, torch.Tensor], taps: Any, what: str) -> dict[str, torch.Tensor]:
    """Check NVIDIA's constant ``resample_filter`` buffers against ``taps`` and drop them."""
    want = setup_filter(list(taps))
    for key, buf in flat.items():
        if key.endswith(".resample_filter") and (
            buf.shape != want.shape or not torch.allclose(buf.float(), want, atol=1e-6)
        ):
            raise CheckpointError(f"{what}: {key} {tuple(buf.shape)} is not the filter {list(taps)} of _init_kwargs")
    return {k: v.float().contiguous() for k, v in flat.items() if not k.endswith(".resample_filter")}


# ---------------------------------------------------------------------------------------------------
# Architecture from the shapes of a state dict in the native (= NVIDIA) names; shared with the
# TensorFlow reader, which converts to these names first.


def _shape(flat: dict[str, torch.Tensor], key: str, ndim: int, what: str) -> tuple[int, ...]:
    if key not in flat:
        raise CheckpointError(f"{what}: missing key {key!r}, needed to infer the architecture")
    if flat[key].ndim != ndim:
        raise CheckpointError(f"{what}: {key} has shape {tuple(flat[key].shape)}, expected {ndim} dims")
    return tuple(flat[key].shape)


def block_resolutions(keys: Any, pattern: str, what: str) -> list[int]:
    """Sorted resolutions ``r`` of keys matching ``pattern`` (group 1 = r); must be 4, 8, ..., R >= 8."""
    res = sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})
    if res != [4 * 2**i for i in range(len(res))] or len(res) < 2:
        raise CheckpointError(f"{what}: blocks at resolutions {res}, expected 4, 8, ..., R with R >= 8")
    return res


def infer_generator_config(flat: dict[str, torch.Tensor], what: str, **settings: Any) -> GeneratorConfig:
    """Generator architecture from tensor shapes: resolutions from ``synthesis.b{r}``, channels from
    ``conv1.weight``, mapping depth from ``mapping.fc{i}``, z/w dims from their weights. ``settings``
    are the GeneratorConfig fields shapes cannot tell (conv_clamp, mapping_lr_mul, resample_filter)."""
    res = block_resolutions(flat, r"synthesis\.b(\d+)\.", what)
    n_map = 0
    while f"mapping.fc{n_map}.weight" in flat:
        n_map += 1
    fc_last = _shape(flat, f"mapping.fc{max(n_map - 1, 0)}.weight", 2, what)
    try:
        return GeneratorConfig(
            z_dim=_shape(flat, "mapping.fc0.weight", 2, what)[1],
            w_dim=fc_last[0],
            img_resolution=res[-1],
            channels={r: _shape(flat, f"synthesis.b{r}.conv1.weight", 4, what)[0] for r in res},
            img_channels=_shape(flat, f"synthesis.b{res[-1]}.torgb.weight", 4, what)[0],
            mapping_layers=n_map,
            **settings,
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{what}: unsupported architecture ({err})") from err


def infer_discriminator_config(flat: dict[str, torch.Tensor], what: str, **settings: Any) -> DiscriminatorConfig:
    """Discriminator architecture from tensor shapes: channels from ``b{r}.conv0`` / ``b4.conv``,
    ``mbstd_num_channels`` from the extra input channels of ``b4.conv``. ``settings``: the other fields."""
    res = block_resolutions(flat, r"b(\d+)\.", what)
    channels = {r: _shape(flat, f"b{r}.conv0.weight", 4, what)[0] for r in res[1:]}
    conv = _shape(flat, "b4.conv.weight", 4, what)
    channels[4] = conv[0]
    try:
        return DiscriminatorConfig(
            img_resolution=res[-1],
            channels=channels,
            mbstd_num_channels=conv[1] - conv[0],
            img_channels=_shape(flat, f"b{res[-1]}.fromrgb.weight", 4, what)[1],
            **settings,
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{what}: unsupported architecture ({err})") from err


def cross_check(what: str, source: str, pairs: list[tuple[str, Any, Any]]) -> None:
    """Raise when a stored setting (not None) disagrees with what the tensors say."""
    bad = [
        f"{name}={said!r} but the tensors say {found!r}"
        for name, said, found in pairs
        if said is not None and said != found
    ]
    if bad:
        raise CheckpointError(f"{what}: {source} disagree with the stored tensors: " + "; ".join(bad))


def _table(top: int, base: Any, cmax: Any) -> dict[int, int] | None:
    """NVIDIA's channel table ``min(channel_base // r, channel_max)``, or None when neither is stored."""
    return None if base is None and cmax is None else default_channels(top, base or 32768, cmax or 512)


def _generator(G: PersistentModule, what: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    flat = _flatten(G, what)
    kw, synth, mapping = G.init_kwargs, G.child("synthesis"), G.child("mapping")
    if synth is None or mapping is None:
        raise CheckpointError(f"{what}: class {G.class_name} has no mapping/synthesis sub-networks")
    skw = [kw.get("synthesis_kwargs"), kw, synth.init_kwargs]  # nested (ada) or flat (stylegan3 repo)
    mkw = [kw.get("mapping_kwargs"), mapping.init_kwargs]
    c_dim = _first([kw, mapping.init_kwargs], "c_dim", 0)
    blocks = {int(m.group(1)) for k in flat if (m := re.match(r"synthesis\.b(\d+)\.", k))}
    arch = _first(skw, "architecture", "skip")
    if any(re.match(r"synthesis\.b\d+\.skip\.", k) for k in flat):
        arch = "resnet"
    elif any(f"synthesis.b{r}.torgb.weight" not in flat for r in blocks if r != max(blocks)):
        arch = "orig"
    _refuse(
        what,
        [
            (
                any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", k) for k in flat),
                f"a StyleGAN3 (alias-free) synthesis network ({synth.class_name} with input / L*_ layers); "
                "only StyleGAN2 generators are supported",
            ),
            (
                bool(c_dim) or any(k.startswith("mapping.embed.") for k in flat),
                f"a conditional generator (c_dim={c_dim}, mapping.embed); only unconditional models are supported",
            ),
            (arch != "skip", f"synthesis architecture {arch!r}; only 'skip' is supported"),
            (_first(skw, "use_noise", True) is False, "a generator without noise inputs (use_noise=False)"),
            (
                _first(skw, "activation", "lrelu") != "lrelu" or _first(mkw, "activation", "lrelu") != "lrelu",
                "activations other than lrelu are not supported",
            ),
        ],
    )
    taps = tuple(_first(skw, "resample_filter", _DEFAULT_FILTER))
    flat = _drop_filters(flat, taps, what)
    clamp = _first(skw, "conv_clamp")
    cfg = infer_generator_config(
        flat,
        what,
        mapping_lr_mul=float(_first(mkw, "lr_multiplier", 0.01)),
        conv_clamp=None if clamp is None else float(clamp),
        resample_filter=taps,
    )
    cross_check(
        what,
        "_init_kwargs",
        [
            ("z_dim", kw.get("z_dim"), cfg.z_dim),
            ("w_dim", kw.get("w_dim"), cfg.w_dim),
            ("img_resolution", kw.get("img_resolution"), cfg.img_resolution),
            ("img_channels", kw.get("img_channels"), cfg.img_channels),
            ("mapping_kwargs.num_layers", _first(mkw, "num_layers"), cfg.mapping_layers),
            (
                "channel_base/channel_max",
                _table(cfg.img_resolution, _first(skw, "channel_base"), _first(skw, "channel_max")),
                cfg.channels,
            ),
        ],
    )
    check_state_dict(what, flat, generator_shapes(cfg))
    return cfg, flat


def _discriminator(D: PersistentModule, what: str) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    flat = _flatten(D, what)
    kw = D.init_kwargs
    bkw, ekw = kw.get("block_kwargs"), kw.get("epilogue_kwargs")
    blocks = {int(m.group(1)) for k in flat if (m := re.match(r"b(\d+)\.", k))}
    arch = kw.get("architecture", "resnet")
    if any(f"b{r}.fromrgb.weight" in flat for r in blocks if r != max(blocks)):
        arch = "skip"
    elif any(f"b{r}.skip.weight" not in flat for r in blocks if r != 4):
        arch = "orig"
    _refuse(
        what,
        [
            (
                bool(kw.get("c_dim")) or any(k.startswith(("mapping.", "b4.cmap")) for k in flat),
                f"a conditional discriminator (c_dim={kw.get('c_dim')}, mapping / cmap); only unconditional "
                "models are supported",
            ),
            (arch != "resnet", f"discriminator architecture {arch!r}; only 'resnet' is supported"),
            (_first([bkw, ekw], "activation", "lrelu") != "lrelu", "activations other than lrelu are not supported"),
        ],
    )
    taps = tuple(_first([bkw, kw], "resample_filter", _DEFAULT_FILTER))
    flat = _drop_filters(flat, taps, what)
    b4 = D.child("b4")
    mbstd = b4.child("mbstd") if b4 is not None else None
    if isinstance(ekw, dict) and "mbstd_group_size" in ekw:
        group = ekw["mbstd_group_size"]
    else:  # the MinibatchStdLayer's own attribute, else NVIDIA's default
        group = mbstd.state.get("group_size", 4) if mbstd is not None else 4
    clamp = kw.get("conv_clamp")
    cfg = infer_discriminator_config(
        flat,
        what,
        resample_filter=taps,
        mbstd_group_size=None if group is None else int(group),
        conv_clamp=None if clamp is None else float(clamp),
    )
    cross_check(
        what,
        "_init_kwargs",
        [
            ("img_resolution", kw.get("img_resolution"), cfg.img_resolution),
            ("img_channels", kw.get("img_channels"), cfg.img_channels),
            ("epilogue_kwargs.mbstd_num_channels", _first([ekw], "mbstd_num_channels"), cfg.mbstd_num_channels),
            (
                "channel_base/channel_max",
                _table(cfg.img_resolution, kw.get("channel_base"), kw.get("channel_max")),
                cfg.channels,
            ),
        ],
    )
    check_state_dict(what, flat, discriminator_shapes(cfg))
    return cfg, flat
