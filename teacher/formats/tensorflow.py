"""The TensorFlow StyleGAN2 release pickles (``stylegan2-ffhq-config-f.pkl`` ...), read without TensorFlow.

The file is ``pickle.dump((G, D, Gs))`` (or ``Gs`` alone) of ``dnnlib.tflib.network.Network`` objects.
A Network pickles the dict of its ``__getstate__``: ``version`` (4), ``name``, ``static_kwargs``,
``components`` (sub-networks: ``mapping`` and ``synthesis`` for G/Gs), ``build_module_src`` and
``build_func_name`` (the official loader ``exec``s that source) and ``variables``: a list of
``(name, numpy array)`` of the network's own variables. Here ``Network`` is a stub that keeps that
dict; the only other globals allowed are numpy's array/scalar reconstruction, ``OrderedDict`` and
``dnnlib.util.EasyDict``. Nothing is executed.

Key map (TF name, components joined with ``/``, -> native). TF conv weights are [kh, kw, in, out]
-> [out, in, kh, kw]; dense [in, out] -> [out, in]. Gs:

- ``dlatent_avg`` -> ``mapping.w_avg``; ``mapping/Dense{i}/{weight,bias}`` -> ``mapping.fc{i}.*``
- ``synthesis/4x4/Const/const`` [1, C, 4, 4] -> ``synthesis.b4.const`` [C, 4, 4]
- ``synthesis/4x4/Conv``, ``{r}x{r}/Conv0_up``, ``{r}x{r}/Conv1``, ``{r}x{r}/ToRGB`` -> ``b4.conv1``,
  ``b{r}.conv0``, ``b{r}.conv1``, ``b{r}.torgb``; within: ``weight`` -> ``weight`` (``Conv0_up``
  also flipped in both spatial axes: TF's transposed conv vs NVIDIA's), ``bias``, ``mod_weight`` ->
  ``affine.weight``, ``mod_bias`` -> ``affine.bias`` **+ 1** (TF adds the 1 at run time),
  ``noise_strength`` -> ``noise_strength`` []
- ``synthesis/noise{i}`` [1, 1, r, r] -> ``noise_const`` [r, r] of conv layer i (0: ``b4.conv1``,
  ``2*log2(r)-5``: ``b{r}.conv0``, ``2*log2(r)-4``: ``b{r}.conv1``); ``lod`` is ignored.

D: ``{R}x{R}/FromRGB`` -> ``b{R}.fromrgb``; ``{r}x{r}/Conv0``, ``Conv1_down``, ``Skip`` (no bias) ->
``b{r}.conv0``, ``conv1``, ``skip`` (no flips); ``4x4/Conv``, ``4x4/Dense0``, ``Output`` -> ``b4.conv``,
``b4.fc``, ``b4.out``. These are the transposes and flips of NVIDIA's ``legacy.py`` conversion.

Refused: conditional networks (``label_size`` > 0, label embeddings), synthesis architectures other
than ``skip`` (``Skip`` layers, progressive-growing ``ToRGB_lod*``), discriminators other than
``resnet``, ``normalize_latents=False``, activations other than lrelu, unknown variables.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict, malformed_settings
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.formats.nvidia import cross_check, infer_discriminator_config, infer_generator_config
from teacher.formats.safe_pickle import (
    CONTAINER_GLOBALS,
    NUMPY_GLOBALS,
    contains_marker,
    looks_like_pickle,
    plain,
    restricted_load,
)

SOURCE_FORMAT = "tensorflow-pkl"
_MARKER = b"dnnlib.tflib.network"
Transform = Callable[[np.ndarray], np.ndarray]


class TFNetworkStub:
    """Stands in for ``dnnlib.tflib.network.Network``: keeps the pickled state, builds no graph."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"malformed dnnlib.tflib.network.Network state ({type(state).__name__})")
        self.state = state

    @property
    def static_kwargs(self) -> dict[str, Any]:
        kw = self.state.get("static_kwargs")
        return dict(kw) if isinstance(kw, dict) else {}

    @property
    def components(self) -> dict[str, Any]:
        comps = self.state.get("components")
        return dict(comps) if isinstance(comps, dict) else {}


_WHITELIST = {("dnnlib.tflib.network", "Network"): TFNetworkStub, **NUMPY_GLOBALS, **CONTAINER_GLOBALS}
_HINTS = {
    (
        "torch_utils.persistence",
        "_reconstruct_persistent_obj",
    ): " (an NVIDIA PyTorch pickle: the nvidia-pkl reader reads it)"
}


def sniff(path: str, head: bytes) -> bool:
    """A pickle that references ``dnnlib.tflib.network`` (looked for in the first MiB)."""
    return looks_like_pickle(head) and contains_marker(path, head, _MARKER)


def read(path: str) -> Checkpoint:
    """Read ``Gs`` (the averaged generator) and ``D`` of a TF StyleGAN2 pickle into the native layout."""
    what = f"TensorFlow pickle {path}"
    data = restricted_load(path, _WHITELIST, what, _HINTS)
    if isinstance(data, TFNetworkStub):
        gs, d = data, None
    elif isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkStub) for n in data):
        _, d, gs = data
    else:
        raise CheckpointError(
            f"{what}: expected a (G, D, Gs) tuple of TF networks or Gs alone, found a {type(data).__name__}"
        )
    ckpt = Checkpoint(SOURCE_FORMAT, extra={"generator_key": "Gs", "g_static_kwargs": plain(gs.static_kwargs)})
    with malformed_settings(what):  # e.g. static_kwargs of the wrong types
        ckpt.g_config, ckpt.g_state = _generator(gs, f"{what} [Gs]")
        if d is not None:
            ckpt.d_config, ckpt.d_state = _discriminator(d, f"{what} [D]")
            ckpt.extra["d_static_kwargs"] = plain(d.static_kwargs)
    return ckpt


def _variables(net: TFNetworkStub, what: str, prefix: str = "", depth: int = 0) -> dict[str, np.ndarray]:
    """All variables of ``net`` and its components, named like ``synthesis/4x4/Conv/weight``."""
    if depth > 8:
        raise CheckpointError(f"{what}: TF network components nested deeper than 8 levels")
    version = net.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(
            f"{what}: TF network {prefix or net.state.get('name')!r} has pickle version "
            f"{version!r}; only version 4 (StyleGAN2) is supported"
        )
    out: dict[str, np.ndarray] = {}
    variables = net.state.get("variables")
    if not isinstance(variables, (list, tuple)):
        raise CheckpointError(f"{what}: TF network {prefix or '<root>'} has no variables list")
    for item in variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"{what}: malformed variable entry in {prefix or '<root>'}")
        name, value = prefix + item[0], item[1]
        if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "fiu":
            raise CheckpointError(f"{what}: variable {name} is a {type(value).__name__}, not a numeric array")
        out[name] = np.asarray(value)
    for cname, comp in net.components.items():
        if not isinstance(comp, TFNetworkStub):
            raise CheckpointError(f"{what}: component {prefix}{cname} is a {type(comp).__name__}, not a network")
        out.update(_variables(comp, what, f"{prefix}{cname}/", depth + 1))
    return out


# --- transforms, numpy in and out; a ValueError names what is wrong ------------------------------


def _dims(a: np.ndarray, n: int) -> np.ndarray:
    if a.ndim != n:
        raise ValueError(f"expected {n} dims, got shape {a.shape}")
    return a


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _conv(a: np.ndarray) -> np.ndarray:
    """[kh, kw, in, out] -> [out, in, kh, kw]."""
    return _dims(a, 4).transpose(3, 2, 0, 1)


def _conv_up(a: np.ndarray) -> np.ndarray:
    """``Conv0_up``: TF's transposed-conv kernel is NVIDIA's flipped in kh and kw."""
    return _dims(a, 4)[::-1, ::-1].transpose(3, 2, 0, 1)


def _dense(a: np.ndarray) -> np.ndarray:
    """[in, out] -> [out, in]."""
    return _dims(a, 2).T


def _mod_bias(a: np.ndarray) -> np.ndarray:
    """TF stores the style bias without the +1 it adds at run time."""
    return a + np.float32(1)


def _scalar(a: np.ndarray) -> np.ndarray:
    return a.reshape(())


def _const(a: np.ndarray) -> np.ndarray:
    """[1, C, 4, 4] -> [C, 4, 4]."""
    if _dims(a, 4).shape[0] != 1:
        raise ValueError(f"shape {a.shape} is not [1, C, 4, 4]")
    return a[0]


def _noise(a: np.ndarray) -> np.ndarray:
    """[1, 1, r, r] -> [r, r]."""
    if _dims(a, 4).shape[:2] != (1, 1):
        raise ValueError(f"shape {a.shape} is not [1, 1, r, r]")
    return a[0, 0]


_LAYER = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}
_LAYER_PARAM: dict[str, tuple[str, Transform]] = {
    "bias": ("bias", _same),
    "mod_weight": ("affine.weight", _dense),
    "mod_bias": ("affine.bias", _mod_bias),
    "noise_strength": ("noise_strength", _scalar),
}


def _noise_layer(i: int) -> str:
    """Native prefix of TF conv layer ``i`` (the layer that reads ``noise{i}``)."""
    if i == 0:
        return "synthesis.b4.conv1"
    return f"synthesis.b{2 ** ((i + 5) // 2)}.conv{0 if i % 2 else 1}"


def _generator_target(name: str) -> tuple[str, Transform] | None:
    """Native key and transform for a Gs variable, or None if it has no native counterpart."""
    if name == "dlatent_avg":
        return "mapping.w_avg", _same
    if m := re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", name):
        return f"mapping.fc{int(m[1])}.{m[2]}", _dense if m[2] == "weight" else _same
    if name == "synthesis/4x4/Const/const":
        return "synthesis.b4.const", _const
    if m := re.fullmatch(r"synthesis/noise(\d+)", name):
        return f"{_noise_layer(int(m[1]))}.noise_const", _noise
    m = re.fullmatch(r"synthesis/(\d+)x(\d+)/(Conv|Conv0_up|Conv1|ToRGB)/(\w+)", name)
    if not m or m[1] != m[2]:
        return None
    if m[3] not in (("Conv", "ToRGB") if m[1] == "4" else ("Conv0_up", "Conv1", "ToRGB")):
        return None
    prefix = f"synthesis.b{int(m[1])}.{_LAYER[m[3]]}"
    if m[4] == "weight":
        return f"{prefix}.weight", _conv_up if m[3] == "Conv0_up" else _conv
    if m[4] in _LAYER_PARAM:
        key, fn = _LAYER_PARAM[m[4]]
        return f"{prefix}.{key}", fn
    return None


def _discriminator_target(name: str) -> tuple[str, Transform] | None:
    """Native key and transform for a D variable, or None."""
    if m := re.fullmatch(r"(\d+)x(\d+)/(FromRGB|Conv0|Conv1_down|Skip)/(weight|bias)", name):
        layer = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}[m[3]]
        return (f"b{int(m[1])}.{layer}.{m[4]}", _conv if m[4] == "weight" else _same) if m[1] == m[2] else None
    if m := re.fullmatch(r"(4x4/Conv|4x4/Dense0|Output)/(weight|bias)", name):
        layer = {"4x4/Conv": "conv", "4x4/Dense0": "fc", "Output": "out"}[m[1]]
        weight_fn = _conv if layer == "conv" else _dense
        return f"b4.{layer}.{m[2]}", weight_fn if m[2] == "weight" else _same
    return None


def _convert(
    variables: dict[str, np.ndarray], target: Callable[[str], tuple[str, Transform] | None], what: str
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in variables.items():
        if name == "lod" or name.endswith("/lod"):  # progressive-growing level of detail, a constant 0
            continue
        hit = target(name)
        if hit is None:
            unknown.append(name)
            continue
        key, fn = hit
        if key in out:
            raise CheckpointError(f"{what}: two TF variables map to {key} (the second is {name})")
        try:
            arr = fn(np.asarray(value, dtype=np.float32))
        except ValueError as err:
            raise CheckpointError(f"{what}: TF variable {name} -> {key}: {err}") from err
        out[key] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C"))  # (ascontiguousarray makes 0-d 1-d)
    if unknown:
        raise CheckpointError(
            f"{what}: {len(unknown)} TF variable(s) with no native counterpart: " + ", ".join(sorted(unknown)[:12])
        )
    return out


def _nf(kw: dict[str, Any], res: int) -> int | None:
    """TF's channel count at ``res`` from fmap_base/decay/min/max, or None when fmap_base is not stored."""
    if "fmap_base" not in kw:
        return None
    stage = int(np.log2(res)) - 1
    value = int(kw["fmap_base"] / (2.0 ** (stage * kw.get("fmap_decay", 1.0))))
    return int(np.clip(value, kw.get("fmap_min", 1), kw.get("fmap_max", 512)))


def _check_kwargs(what: str, checks: list[tuple[bool, str]]) -> None:
    for failed, why in checks:
        if failed:
            raise CheckpointError(f"{what}: {why}")


def _generator(gs: TFNetworkStub, what: str) -> tuple[Any, dict[str, torch.Tensor]]:
    comps = gs.components
    if not isinstance(comps.get("mapping"), TFNetworkStub) or not isinstance(comps.get("synthesis"), TFNetworkStub):
        raise CheckpointError(
            f"{what}: not a StyleGAN2 generator (components {sorted(comps)}, build function "
            f"{gs.state.get('build_func_name')!r})"
        )
    skw = {**gs.static_kwargs, **comps["synthesis"].static_kwargs}
    mkw = {**gs.static_kwargs, **comps["mapping"].static_kwargs}
    variables = _variables(gs, what)
    names = list(variables)
    arch = skw.get("architecture", "skip")
    if any(re.match(r"synthesis/ToRGB_lod\d+/", n) for n in names):
        arch = "orig (progressive growing: StyleGAN1, StyleGAN2 configs B-D)"
    elif any(re.match(r"synthesis/.*/Skip/", n) for n in names):
        arch = "resnet"
    _check_kwargs(
        what,
        [
            (
                bool(mkw.get("label_size")) or any(re.match(r"mapping/Label", n) for n in names),
                f"a conditional generator (label_size={mkw.get('label_size')}); "
                "only unconditional models are supported",
            ),
            (arch != "skip", f"synthesis architecture {arch!r}; only 'skip' (StyleGAN2 configs E/F) is supported"),
            (mkw.get("normalize_latents", True) is False, "normalize_latents=False is not supported"),
            (
                mkw.get("mapping_nonlinearity", "lrelu") != "lrelu" or skw.get("nonlinearity", "lrelu") != "lrelu",
                "activations other than lrelu are not supported",
            ),
            (skw.get("use_noise", True) is False, "a generator without noise inputs (use_noise=False)"),
            (skw.get("resample_kernel", [1, 3, 3, 1]) is None, "resample_kernel=None (no filtering) is not supported"),
        ],
    )
    state = _convert(variables, _generator_target, what)
    clamp = skw.get("conv_clamp")
    cfg = infer_generator_config(
        state,
        what,
        mapping_lr_mul=float(mkw.get("mapping_lrmul", 0.01)),
        conv_clamp=None if clamp is None else float(clamp),
        resample_filter=tuple(skw.get("resample_kernel", [1, 3, 3, 1])),
    )
    cross_check(
        what,
        "static_kwargs",
        [
            ("latent_size", mkw.get("latent_size"), cfg.z_dim),
            ("dlatent_size", mkw.get("dlatent_size"), cfg.w_dim),
            ("resolution", skw.get("resolution"), cfg.img_resolution),
            ("num_channels", skw.get("num_channels"), cfg.img_channels),
            ("mapping_layers", mkw.get("mapping_layers"), cfg.mapping_layers),
            (
                "fmap_base/fmap_max",
                None if "fmap_base" not in skw else {r: _nf(skw, r) for r in cfg.channels},
                cfg.channels,
            ),
        ],
    )
    check_state_dict(what, state, generator_shapes(cfg))
    return cfg, state


def _discriminator(d: TFNetworkStub, what: str) -> tuple[Any, dict[str, torch.Tensor]]:
    kw = d.static_kwargs
    variables = _variables(d, what)
    names = list(variables)
    res = sorted({int(m[1]) for n in names if (m := re.match(r"(\d+)x\1/", n))})
    top = max(res, default=0)
    arch = kw.get("architecture", "resnet")
    if any(re.match(r"FromRGB_lod\d+/", n) for n in names):
        arch = "orig (progressive growing)"
    elif any(re.match(r"(\d+)x\1/FromRGB/", n) and not n.startswith(f"{top}x{top}/") for n in names):
        arch = "skip"
    elif any(f"{r}x{r}/Skip/weight" not in variables for r in res if r != 4):
        arch = "orig"
    _check_kwargs(
        what,
        [
            (
                bool(kw.get("label_size")) or any(re.match(r"(LabelEmbed|Mapping\d+)/", n) for n in names),
                f"a conditional discriminator (label_size={kw.get('label_size')}); only unconditional models are "
                "supported",
            ),
            (arch != "resnet", f"discriminator architecture {arch!r}; only 'resnet' is supported"),
            (kw.get("nonlinearity", "lrelu") != "lrelu", "activations other than lrelu are not supported"),
            (kw.get("resample_kernel", [1, 3, 3, 1]) is None, "resample_kernel=None (no filtering) is not supported"),
            (
                not isinstance(kw.get("mbstd_group_size", 4), (int, np.integer)),
                f"mbstd_group_size={kw.get('mbstd_group_size')!r} is not an integer",
            ),
        ],
    )
    state = _convert(variables, _discriminator_target, what)
    group = int(kw.get("mbstd_group_size", 4))
    clamp = kw.get("conv_clamp")
    cfg = infer_discriminator_config(
        state,
        what,
        mbstd_group_size=group,
        conv_clamp=None if clamp is None else float(clamp),
        resample_filter=tuple(kw.get("resample_kernel", [1, 3, 3, 1])),
    )
    cross_check(
        what,
        "static_kwargs",
        [
            ("resolution", kw.get("resolution"), cfg.img_resolution),
            ("num_channels", kw.get("num_channels"), cfg.img_channels),
            ("mbstd_num_features", kw.get("mbstd_num_features", 1) if group > 1 else 0, cfg.mbstd_num_channels),
            (
                "fmap_base/fmap_max",
                None if "fmap_base" not in kw else {r: _nf(kw, r) for r in cfg.channels},
                cfg.channels,
            ),
        ],
    )
    check_state_dict(what, state, discriminator_shapes(cfg))
    return cfg, state
