"""Tiny files in the real structures of NVIDIA's PyTorch pickles and the TensorFlow StyleGAN2 pickles.

Neither ``torch_utils`` nor ``dnnlib`` exists here, so :class:`FakePickler` (the pure-Python pickler
plus a few dispatch entries) writes their globals by name. It produces the opcode sequences the real
writers produce (facts, not code, carried over):

- NVIDIA persistent module: ``GLOBAL torch_utils.persistence _reconstruct_persistent_obj``,
  ``(meta,)``, ``REDUCE`` with ``meta = {type: 'class', version: 6, module_src, class_name, state}``,
  ``state`` the module's ``__dict__`` (``_parameters`` / ``_buffers`` / ``_modules`` OrderedDicts, the
  hook dicts, attributes, ``_init_args``, ``_init_kwargs`` with ``dnnlib.util.EasyDict`` values).
  Tensors are pickled by torch itself (``_rebuild_tensor_v2`` / ``_rebuild_parameter`` /
  ``_load_from_bytes``). Default protocol 3: Python 3.7's default, which the stylegan2-ada era used.
- TF Network: ``GLOBAL dnnlib.tflib.network Network``, ``()``, ``NEWOBJ``, state dict, ``BUILD``;
  numpy arrays as numpy 1.x writes them (``numpy.core.multiarray._reconstruct`` / ``scalar``).

:class:`Global` and :class:`Reduce` also let tests write any call, e.g. ``builtins.exec``.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig, default_channels
from teacher.ops import setup_filter

NETWORKS_SRC = "# stand-in for training/networks.py: a safe reader never executes this\nraise SystemExit(1)\n"


class Global:
    """A global written by name without importing it (calling it is an error)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.module}.{self.name} is only a name for the pickle")


class Reduce:
    """Pickles as ``func(*args)`` then, if ``state`` is given, ``BUILD(state)``."""

    def __init__(self, func: Global, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state


class NewObj:
    """Pickles as ``cls.__new__(cls)`` (NEWOBJ), then ``BUILD(state)`` (how a TF Network pickles)."""

    def __init__(self, cls: Global, state: Any) -> None:
        self.cls, self.state = cls, state


class EasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict`` (NEWOBJ + SETITEMS, no instance state)."""


RECONSTRUCT = Global("torch_utils.persistence", "_reconstruct_persistent_obj")
TF_NETWORK = Global("dnnlib.tflib.network", "Network")
EASYDICT = Global("dnnlib.util", "EasyDict")
NP_RECONSTRUCT = Global("numpy.core.multiarray", "_reconstruct")
NP_SCALAR = Global("numpy.core.multiarray", "scalar")


class Persistent:
    """An NVIDIA persistent object: pickles as ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name: str, state: dict, module_src: str = NETWORKS_SRC) -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)


class FakePickler(pickle._Pickler):
    """The pure-Python pickler with dispatch entries for the stand-ins above."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global_name(self, obj: Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    def save_call(self, obj: Reduce) -> None:
        self.save(obj.func)
        self.save(tuple(obj.args))
        self.write(pickle.REDUCE)
        self.memoize(obj)
        if obj.state is not None:
            self.save(obj.state)
            self.write(pickle.BUILD)

    def save_persistent(self, obj: Persistent) -> None:
        self.save(RECONSTRUCT)
        self.save((obj.meta,))
        self.write(pickle.REDUCE)
        self.memoize(obj)

    def save_newobj(self, obj: NewObj) -> None:
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    def save_easydict(self, obj: EasyDict) -> None:
        self.save(EASYDICT)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        if obj:  # one MARK ... SETITEMS batch (small dicts only)
            self.write(pickle.MARK)
            for key, value in obj.items():
                self.save(key)
                self.save(value)
            self.write(pickle.SETITEMS)

    dispatch[Global] = save_global_name
    dispatch[Reduce] = save_call
    dispatch[Persistent] = save_persistent
    dispatch[NewObj] = save_newobj
    dispatch[EasyDict] = save_easydict

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:  # as numpy 1.x writes it
            return NP_RECONSTRUCT, (np.ndarray, (0,), b"b"), obj.__reduce__()[2]
        if isinstance(obj, np.generic):
            return NP_SCALAR, (obj.dtype, obj.tobytes())
        return NotImplemented


def dump(path: Any, obj: Any, protocol: int) -> None:
    with open(path, "wb") as fh:
        FakePickler(fh, protocol=protocol).dump(obj)


def exec_payload(marker: Any) -> Reduce:
    """``builtins.exec`` creating ``marker``: what a malicious pickle does."""
    return Reduce(Global("builtins", "exec"), (f"open({str(marker)!r}, 'w').close()",))


def evil_storage_blob(marker: Any) -> bytes:
    """A legacy ``torch.save`` stream whose object runs ``exec`` when unpickled without restrictions."""

    class Evil:
        def __reduce__(self) -> tuple:
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    buf = io.BytesIO()
    torch.save(Evil(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def storage_blob(t: torch.Tensor) -> bytes:
    """The bytes torch pickles a tensor's storage as (a legacy ``torch.save`` stream)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        return t.storage().__reduce__()[1][0]


def tensor_over_blob(blob: bytes, size: tuple[int, ...] = (1,)) -> Reduce:
    """A tensor pickled the way torch does (``_rebuild_tensor_v2(_load_from_bytes(blob), ...)``)."""
    storage = Reduce(Global("torch.storage", "_load_from_bytes"), (blob,))
    stride = tuple(math.prod(size[i + 1 :]) for i in range(len(size)))
    return Reduce(Global("torch._utils", "_rebuild_tensor_v2"), (storage, 0, size, stride, False, OrderedDict()))


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every key; ``affine.bias`` near 1 in [0.5, 2] (TF stores it minus 1, and
    ``(x - 1) + 1 == x`` exactly in float32 there)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        t = torch.randn(shape, generator=g)
        if key.endswith("affine.bias"):
            t = (1 + 0.25 * t).clamp(0.5, 2.0)
        out[key] = t
    return out


# ---------------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch / stylegan3 pickles


def _channel_kwargs(res: int, channels: dict[int, int]) -> dict[str, int]:
    """channel_base / channel_max reproducing ``channels``, or {} when no pair does."""
    base, cmax = channels[res] * res, max(channels.values())
    return {"channel_base": base, "channel_max": cmax} if default_channels(res, base, cmax) == channels else {}


def nvidia_g_kwargs(cfg: GeneratorConfig, layout: str = "ada") -> dict[str, Any]:
    """``G._init_kwargs`` as stylegan2-ada-pytorch (``synthesis_kwargs`` nested) or the stylegan3
    repository (synthesis kwargs at the top level) build them."""
    synth = {**_channel_kwargs(cfg.img_resolution, cfg.channels), "num_fp16_res": 0, "conv_clamp": cfg.conv_clamp}
    if cfg.resample_filter != (1.0, 3.0, 3.0, 1.0):
        synth["resample_filter"] = list(cfg.resample_filter)
    mapping = EasyDict(num_layers=cfg.mapping_layers)
    if cfg.mapping_lr_mul != 0.01:
        mapping["lr_multiplier"] = cfg.mapping_lr_mul
    common = {"c_dim": 0, "img_resolution": cfg.img_resolution, "img_channels": cfg.img_channels}
    if layout == "ada":
        return {
            "z_dim": cfg.z_dim,
            "w_dim": cfg.w_dim,
            "mapping_kwargs": mapping,
            "synthesis_kwargs": EasyDict(synth),
            **common,
        }
    return {
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "mapping_kwargs": mapping,
        **synth,
        "fused_modconv_default": "inference_only",
        **common,
    }


def nvidia_d_kwargs(cfg: DiscriminatorConfig) -> dict[str, Any]:
    epilogue = EasyDict(mbstd_group_size=cfg.mbstd_group_size)
    if cfg.mbstd_num_channels != 1:
        epilogue["mbstd_num_channels"] = cfg.mbstd_num_channels
    return {
        "block_kwargs": EasyDict(),
        "mapping_kwargs": EasyDict(),
        "epilogue_kwargs": epilogue,
        **_channel_kwargs(cfg.img_resolution, cfg.channels),
        "num_fp16_res": 0,
        "conv_clamp": cfg.conv_clamp,
        "c_dim": 0,
        "img_resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
    }


_G_CLASSES = [
    (r"", "Generator"),
    (r"mapping", "MappingNetwork"),
    (r"synthesis", "SynthesisNetwork"),
    (r"synthesis\.b\d+", "SynthesisBlock"),
    (r"synthesis\.b\d+\.conv[01]", "SynthesisLayer"),
    (r"synthesis\.b\d+\.torgb", "ToRGBLayer"),
    (r"synthesis\.input", "SynthesisInput"),
    (r"synthesis\.L\d+_.*", "SynthesisLayer"),
    (r".*\.skip", "Conv2dLayer"),
    (r".*", "FullyConnectedLayer"),
]
_D_CLASSES = [
    (r"", "Discriminator"),
    (r"b4", "DiscriminatorEpilogue"),
    (r"b\d+", "DiscriminatorBlock"),
    (r"b4\.mbstd", "MinibatchStdLayer"),
    (r"b4\.(fc|out)|mapping\..*", "FullyConnectedLayer"),
    (r"mapping", "MappingNetwork"),
    (r".*", "Conv2dLayer"),
]
_FILTERED = {"SynthesisBlock", "SynthesisLayer", "DiscriminatorBlock", "Conv2dLayer"}  # hold resample_filter
_BUFFERS = {"w_avg", "noise_const", "resample_filter"}


def _class_of(table: list[tuple[str, str]], path: str) -> str:
    return next(name for pattern, name in table if re.fullmatch(pattern, path))


def _attributes(cls: str, path: str, params: dict[str, torch.Tensor], clamp: Any) -> dict[str, Any]:
    """A few of the plain attributes NVIDIA's modules carry (strings, ints, numpy float64 gains)."""
    w = params.get("weight")
    fan_in = int(np.prod(w.shape[1:])) if w is not None else 1
    res = int(m[1]) if (m := re.search(r"b(\d+)", path)) else 0
    if cls == "FullyConnectedLayer":
        lr = 0.01 if path.startswith("mapping.fc") else 1
        return {
            "activation": "lrelu" if lr != 1 else "linear",
            "weight_gain": np.float64(lr / np.sqrt(fan_in)),
            "bias_gain": lr,
        }
    if cls == "SynthesisLayer":
        return {
            "resolution": res,
            "up": 2 if path.endswith("conv0") else 1,
            "use_noise": True,
            "activation": "lrelu",
            "conv_clamp": clamp,
            "padding": 1,
            "act_gain": np.float64(np.sqrt(2)),
        }
    if cls in ("ToRGBLayer", "Conv2dLayer"):
        return {"conv_clamp": clamp, "weight_gain": np.float64(1 / np.sqrt(fan_in))}
    if cls in ("SynthesisBlock", "DiscriminatorBlock", "DiscriminatorEpilogue"):
        arch = "resnet" if cls.startswith("Disc") else "skip"
        return {"resolution": res, "architecture": arch, "use_fp16": False, "channels_last": False}
    return {}


def _module_state(params: dict, buffers: dict, modules: dict, attrs: dict, init_kwargs: dict) -> dict[str, Any]:
    """A module ``__dict__`` in the order torch 1.8 builds it, then the persistence fields."""
    return {
        "training": False,
        "_parameters": OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()),
        "_buffers": OrderedDict((k, v.clone()) for k, v in buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_is_full_backward_hook": None,
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict(modules),
        **attrs,
        "_init_args": (),
        "_init_kwargs": init_kwargs,
    }


def nvidia_module(
    flat: dict[str, torch.Tensor],
    classes: list[tuple[str, str]],
    *,
    taps: Any = (1, 3, 3, 1),
    kwargs: dict[str, dict] | None = None,
    extra_modules: dict[str, dict] | None = None,
    inject: dict[str, dict] | None = None,
    clamp: Any = None,
    module_src: str = NETWORKS_SRC,
) -> Persistent:
    """A persistent module tree from a flat NVIDIA-named state dict; every module of class in
    ``_FILTERED`` gets NVIDIA's ``resample_filter`` buffer.

    Args:
        kwargs: Module path -> ``_init_kwargs`` (others get ``{}``).
        extra_modules: Module path -> attributes, for modules without tensors (``b4.mbstd``).
        inject: Module path -> extra state entries (e.g. a malicious object deep in the tree).
    """
    tree: dict[str, dict] = {"": {"params": {}, "buffers": {}, "children": {}}}

    def node(path: str) -> dict:
        if path not in tree:
            parent, _, name = path.rpartition(".")
            node(parent)["children"][name] = path
            tree[path] = {"params": {}, "buffers": {}, "children": {}}
        return tree[path]

    for key, t in flat.items():
        path, _, leaf = key.rpartition(".")
        node(path)["buffers" if leaf in _BUFFERS else "params"][leaf] = t
    for path in extra_modules or {}:
        node(path)
    fir = setup_filter(list(taps))

    def build(path: str) -> Persistent:
        n, cls = tree[path], _class_of(classes, path)
        buffers = {"resample_filter": fir, **n["buffers"]} if cls in _FILTERED else n["buffers"]
        children = {name: build(child) for name, child in n["children"].items()}
        attrs = {**_attributes(cls, path, n["params"], clamp), **(extra_modules or {}).get(path, {})}
        state = _module_state(n["params"], buffers, children, attrs, (kwargs or {}).get(path, {}))
        state.update((inject or {}).get(path, {}))
        return Persistent(cls, state, module_src)

    return build("")


def nvidia_generator(
    cfg: GeneratorConfig, state: dict[str, torch.Tensor], layout: str = "ada", **options: Any
) -> Persistent:
    """An NVIDIA ``Generator`` persistent tree (``layout``: ``ada``, ``stylegan3`` or ``none`` = no kwargs)."""
    kw: dict[str, dict] = {}
    if layout != "none":
        top = nvidia_g_kwargs(cfg, layout)
        synth = top.get("synthesis_kwargs") or {
            k: top[k]
            for k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "resample_filter")
            if k in top
        }
        kw = {
            "": top,
            "mapping": {
                "z_dim": cfg.z_dim,
                "c_dim": 0,
                "w_dim": cfg.w_dim,
                "num_ws": cfg.num_ws,
                **top["mapping_kwargs"],
            },
            "synthesis": {
                "w_dim": cfg.w_dim,
                "img_resolution": cfg.img_resolution,
                "img_channels": cfg.img_channels,
                **synth,
            },
        }
    kw.update(options.pop("kwargs", {}))
    return nvidia_module(state, _G_CLASSES, taps=cfg.resample_filter, kwargs=kw, clamp=cfg.conv_clamp, **options)


def nvidia_discriminator(
    cfg: DiscriminatorConfig, state: dict[str, torch.Tensor], layout: str = "ada", **options: Any
) -> Persistent:
    kw = {"": nvidia_d_kwargs(cfg)} if layout != "none" else {}
    kw.update(options.pop("kwargs", {}))
    mbstd = (
        {"b4.mbstd": {"group_size": cfg.mbstd_group_size, "num_channels": cfg.mbstd_num_channels}}
        if cfg.mbstd_num_channels > 0
        else {}
    )
    return nvidia_module(
        state, _D_CLASSES, taps=cfg.resample_filter, kwargs=kw, extra_modules=mbstd, clamp=cfg.conv_clamp, **options
    )


def write_nvidia_pkl(
    path: Any,
    g_cfg: GeneratorConfig,
    g_state: dict[str, torch.Tensor],
    d_cfg: DiscriminatorConfig | None = None,
    d_state: dict[str, torch.Tensor] | None = None,
    *,
    protocol: int = 3,
    layout: str = "ada",
    g_train_state: dict | None = None,
    networks: tuple[str, ...] = ("G", "D", "G_ema"),
    g_options: dict | None = None,
    d_options: dict | None = None,
    extra: dict | None = None,
) -> None:
    """A stylegan2-ada-pytorch ``network-snapshot`` pickle: ``training_set_kwargs``, ``G`` (from
    ``g_train_state``, default ``g_state``), ``D``, ``G_ema`` (``g_state``), ``augment_pipe``.

    Args:
        layout: ``ada`` / ``stylegan3`` (where G's synthesis kwargs live) / ``none`` (no ``_init_kwargs``).
        networks: Which networks to write.
        g_options / d_options: Passed to :func:`nvidia_module` (``inject``, ``kwargs``, ``module_src``).
        extra: More top-level entries.
    """
    g_options, d_options = dict(g_options or {}), dict(d_options or {})
    data: dict[str, Any] = {
        "training_set_kwargs": {
            "class_name": "training.dataset.ImageFolderDataset",
            "path": "/data/tiny.zip",
            "use_labels": False,
            "max_size": 16,
            "xflip": False,
            "resolution": g_cfg.img_resolution,
        }
    }
    if "G" in networks:
        data["G"] = nvidia_generator(
            g_cfg,
            g_train_state if g_train_state is not None else g_state,
            layout,
            **{k: v for k, v in g_options.items() if k != "inject"},
        )
    if "D" in networks and d_state is not None:
        data["D"] = nvidia_discriminator(d_cfg, d_state, layout, **d_options)
    if "G_ema" in networks:
        data["G_ema"] = nvidia_generator(g_cfg, g_state, layout, **g_options)
    data["augment_pipe"] = Persistent(
        "AugmentPipe",
        _module_state(
            {}, {"p": torch.zeros([]), "Hz_geom": torch.ones(12)}, {}, {"xflip": 1.0}, {"xflip": 1, "rotate90": 1}
        ),
        "# stand-in for training/augment.py\n",
    )
    data.update(extra or {})
    dump(path, data, protocol)


# ---------------------------------------------------------------------------------------------------
# TensorFlow StyleGAN2 pickles


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def tf_conv(w: torch.Tensor) -> np.ndarray:
    """Ours [out, in, kh, kw] -> TF [kh, kw, in, out]."""
    return _np(w.permute(2, 3, 1, 0))


def tf_synthesis_variables(cfg: GeneratorConfig, s: dict[str, torch.Tensor]) -> list[tuple[str, Any]]:
    """``G_synthesis`` variables in creation order: noise inputs, then per layer weight, mod_weight,
    mod_bias (ours - 1), noise_strength (a numpy float32 scalar), bias."""
    layers = ["synthesis.b4.conv1"] + [f"synthesis.b{r}.conv{i}" for r in cfg.resolutions[1:] for i in (0, 1)]
    out: list[tuple[str, Any]] = [(f"noise{i}", _np(s[f"{p}.noise_const"])[None, None]) for i, p in enumerate(layers)]
    out.append(("4x4/Const/const", _np(s["synthesis.b4.const"])[None]))
    for r in cfg.resolutions:
        names = (
            [("Conv", "conv1"), ("ToRGB", "torgb")]
            if r == 4
            else [("Conv0_up", "conv0"), ("Conv1", "conv1"), ("ToRGB", "torgb")]
        )
        for tf_name, ours in names:
            p, scope = f"synthesis.b{r}.{ours}", f"{r}x{r}/{tf_name}"
            weight = tf_conv(s[f"{p}.weight"])
            if tf_name == "Conv0_up":  # TF's transposed conv kernel is NVIDIA's flipped in kh and kw
                weight = np.ascontiguousarray(weight[::-1, ::-1])
            out += [
                (f"{scope}/weight", weight),
                (f"{scope}/mod_weight", _np(s[f"{p}.affine.weight"].T)),
                (f"{scope}/mod_bias", _np(s[f"{p}.affine.bias"]) - np.float32(1)),
            ]
            if ours != "torgb":
                out.append((f"{scope}/noise_strength", np.float32(s[f"{p}.noise_strength"].item())))
            out.append((f"{scope}/bias", _np(s[f"{p}.bias"])))
    return out


def tf_mapping_variables(cfg: GeneratorConfig, s: dict[str, torch.Tensor]) -> list[tuple[str, Any]]:
    return [
        v
        for i in range(cfg.mapping_layers)
        for v in (
            (f"Dense{i}/weight", _np(s[f"mapping.fc{i}.weight"].T)),
            (f"Dense{i}/bias", _np(s[f"mapping.fc{i}.bias"])),
        )
    ]


def tf_discriminator_variables(cfg: DiscriminatorConfig, s: dict[str, torch.Tensor]) -> list[tuple[str, Any]]:
    top = cfg.img_resolution
    out: list[tuple[str, Any]] = [
        (f"{top}x{top}/FromRGB/weight", tf_conv(s[f"b{top}.fromrgb.weight"])),
        (f"{top}x{top}/FromRGB/bias", _np(s[f"b{top}.fromrgb.bias"])),
    ]
    for r in sorted(cfg.channels, reverse=True)[:-1]:
        for tf_name, ours in (("Conv0", "conv0"), ("Conv1_down", "conv1")):
            out += [
                (f"{r}x{r}/{tf_name}/weight", tf_conv(s[f"b{r}.{ours}.weight"])),
                (f"{r}x{r}/{tf_name}/bias", _np(s[f"b{r}.{ours}.bias"])),
            ]
        out.append((f"{r}x{r}/Skip/weight", tf_conv(s[f"b{r}.skip.weight"])))
    return out + [
        ("4x4/Conv/weight", tf_conv(s["b4.conv.weight"])),
        ("4x4/Conv/bias", _np(s["b4.conv.bias"])),
        ("4x4/Dense0/weight", _np(s["b4.fc.weight"].T)),
        ("4x4/Dense0/bias", _np(s["b4.fc.bias"])),
        ("Output/weight", _np(s["b4.out.weight"].T)),
        ("Output/bias", _np(s["b4.out.bias"])),
    ]


def tf_network(
    name: str,
    func: str,
    static_kwargs: dict,
    variables: list,
    components: dict | None = None,
    module_src: str = "# stand-in for training/networks_stylegan2.py\nraise SystemExit(1)\n",
) -> NewObj:
    """A ``dnnlib.tflib.network.Network`` with the state of its ``__getstate__``."""
    return NewObj(
        TF_NETWORK,
        {
            "version": 4,
            "name": name,
            "static_kwargs": dict(static_kwargs),
            "components": dict(components or {}),
            "build_module_src": module_src,
            "build_func_name": func,
            "variables": list(variables),
        },
    )


def tf_g_kwargs(cfg: GeneratorConfig) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "num_channels": cfg.img_channels,
        "resolution": cfg.img_resolution,
        "label_size": 0,
        "latent_size": cfg.z_dim,
        "dlatent_size": cfg.w_dim,
        "mapping_layers": cfg.mapping_layers,
        "mapping_fmaps": cfg.w_dim,
    }
    ck = _channel_kwargs(cfg.img_resolution, cfg.channels)
    if ck:  # TF: nf(stage) = min(fmap_base / 2**stage, fmap_max), stage = log2(res) - 1
        kw.update(fmap_base=ck["channel_base"] // 2, fmap_max=ck["channel_max"])
    if cfg.conv_clamp is not None:
        kw["conv_clamp"] = cfg.conv_clamp
    return kw


def tf_generator(
    cfg: GeneratorConfig,
    state: dict[str, torch.Tensor],
    name: str = "Gs",
    static_kwargs: dict | None = None,
    extra_vars: dict | None = None,
    drop_vars: tuple[str, ...] = (),
) -> NewObj:
    """A ``G_main`` network with ``mapping`` / ``synthesis`` components; ``drop_vars`` are removed, then
    ``extra_vars`` added (full names such as ``synthesis/4x4/Conv/weight``)."""
    kw = {**tf_g_kwargs(cfg), **(static_kwargs or {})}
    groups = {
        "": [("lod", np.float32(0)), ("dlatent_avg", _np(state["mapping.w_avg"]))],
        "synthesis/": tf_synthesis_variables(cfg, state),
        "mapping/": tf_mapping_variables(cfg, state),
    }
    for prefix in groups:
        groups[prefix] = [(n, v) for n, v in groups[prefix] if prefix + n not in drop_vars]
    for full, value in (extra_vars or {}).items():
        prefix = next((p for p in ("synthesis/", "mapping/") if full.startswith(p)), "")
        groups[prefix].append((full[len(prefix) :], value))
    comps = {
        "synthesis": tf_network("G_synthesis", "G_synthesis_stylegan2", kw, groups["synthesis/"]),
        "mapping": tf_network("G_mapping", "G_mapping", {"dlatent_broadcast": cfg.num_ws, **kw}, groups["mapping/"]),
    }
    return tf_network(name, "G_main", kw, groups[""], comps)


def tf_discriminator(
    cfg: DiscriminatorConfig,
    state: dict[str, torch.Tensor],
    static_kwargs: dict | None = None,
    extra_vars: dict | None = None,
    drop_vars: tuple[str, ...] = (),
) -> NewObj:
    kw: dict[str, Any] = {"num_channels": cfg.img_channels, "resolution": cfg.img_resolution, "label_size": 0}
    ck = _channel_kwargs(cfg.img_resolution, cfg.channels)
    if ck:
        kw.update(fmap_base=ck["channel_base"] // 2, fmap_max=ck["channel_max"])
    if cfg.mbstd_group_size != 4:
        kw["mbstd_group_size"] = cfg.mbstd_group_size
    if cfg.mbstd_num_channels != 1:
        kw["mbstd_num_features"] = cfg.mbstd_num_channels
    kw.update(static_kwargs or {})
    variables = [(n, v) for n, v in tf_discriminator_variables(cfg, state) if n not in drop_vars]
    variables += list((extra_vars or {}).items())
    return tf_network("D", "D_stylegan2", kw, variables)


def write_tf_pkl(
    path: Any,
    g_cfg: GeneratorConfig,
    g_state: dict[str, torch.Tensor],
    d_cfg: DiscriminatorConfig | None = None,
    d_state: dict[str, torch.Tensor] | None = None,
    *,
    protocol: int = 4,
    gs_only: bool = False,
    g_train_state: dict | None = None,
    g_options: dict | None = None,
    d_options: dict | None = None,
) -> None:
    """A TF StyleGAN2 release pickle: ``(G, D, Gs)`` (``gs_only``: ``Gs`` alone). ``G`` holds
    ``g_train_state`` (default ``g_state``); ``g_options`` / ``d_options`` go to :func:`tf_generator` /
    :func:`tf_discriminator` (``static_kwargs``, ``extra_vars``, ``drop_vars``)."""
    gs = tf_generator(g_cfg, g_state, "Gs", **(g_options or {}))
    if gs_only:
        dump(path, gs, protocol)
        return
    g = tf_generator(g_cfg, g_train_state if g_train_state is not None else g_state, "G", **(g_options or {}))
    dump(path, (g, tf_discriminator(d_cfg, d_state, **(d_options or {})), gs), protocol)
