"""Read the split StyleGAN2 teacher files of MobileStyleGAN.pytorch (bes-dev).

That project keeps its teacher as two ``torch.save`` files, each ``{"params": {...}, "ckpt":
state_dict}``, written by its ``convert_rosinality_ckpt.py`` from a rosinality checkpoint and
published for FFHQ as ``stylegan2_ffhq_config_f_mapping_network.ckpt`` and
``stylegan2_ffhq_config_f_synthesis_network.ckpt`` (the converter writes whatever names
``--ckpt-mnet`` / ``--ckpt-snet`` give):

- Mapping: ``params = {"style_dim": D, "n_layers": L}`` (its constructor also takes ``lr_mlp``,
  default 0.01); keys ``layers.{1..L}.weight`` [D, D] and ``.bias`` [D]. ``layers.0`` is the
  parameter-free PixelNorm. rosinality's ``EqualLinear(lr_mul=0.01)``: raw weights, exactly our
  convention, so they copy over unchanged. z_dim = w_dim = D.
- Synthesis: ``params = {"size": R, "style_dim": D, "channels": [c4, c8, ..., cR]}`` (the
  published file may add ``input_shape``; ``blur_kernel`` is the other constructor argument).
  Keys: ``input.input`` [1, c4, 4, 4]; ``conv1.*`` and ``to_rgb1.*`` (4 px); block ``layers.{j}``
  (resolution 8 * 2**j) holds ``conv1`` (up-sampling, = rosinality ``convs.{2j}``), ``conv2``
  (= ``convs.{2j+1}``) and ``to_rgb`` (= ``to_rgbs.{j}``); plus the constant FIR buffers
  ``layers.{j}.conv1.conv.blur.kernel``, ``layers.{j}.to_rgb.upsample.kernel`` and ``upsample.kernel``
  (all outer(f, f) / sum**2 * 4), which are checked and dropped. A styled conv is
  ``conv.weight`` [1, out, in, k, k], ``conv.modulation.weight|bias``, ``noise.weight`` [1],
  ``activate.bias`` [out]; a ToRGB is ``conv.weight`` [1, 3, C, 1, 1], ``conv.modulation.*``,
  ``bias`` [1, 3, 1, 1]. Up-sampling weights need no flip.

What the files lack, and what this reader puts in their place (both recorded in ``extra``):

- **No noise buffers.** MobileStyleGAN draws fresh noise on every teacher call. ``noise_const``
  is filled with zeros and ``extra["noise_const_missing"] = True``, so our generator's
  ``noise_mode="const"`` means *no* noise for such a checkpoint (use random noise to match the
  teacher's distribution).
- **No w_avg.** ``mapping.w_avg`` is zeros and ``extra["w_avg_missing"] = True``; compute a
  truncation centre from mapped z before truncating.

Passing files: :func:`read` takes a directory holding one pair, or either file of a pair whose
names differ only by ``mapping`` / ``synthesis`` (the partner is looked up next to it). A lone
file is an error (half a generator); :func:`read_pair` takes two explicit paths.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from teacher.config import GeneratorConfig
from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict
from teacher.formats.layout import generator_shapes

SOURCE_FORMAT = "mobilestylegan-split"
FFHQ_FILE_NAMES = (
    "stylegan2_ffhq_config_f_mapping_network.ckpt",
    "stylegan2_ffhq_config_f_synthesis_network.ckpt",
)
_SUFFIXES = (".ckpt", ".pt", ".pth")
_MAPPING_PARAMS = {"style_dim", "n_layers", "lr_mlp"}
_SYNTHESIS_PARAMS = {"size", "style_dim", "channels", "input_shape", "blur_kernel"}
_DEFAULT_LR_MLP = 0.01
_DEFAULT_BLUR = (1.0, 3.0, 3.0, 1.0)
_IMG_CHANNELS = 3  # ToRGB is hard-wired to RGB in MobileStyleGAN
_KERNEL = 3
_SNIFF_BYTES = 4096


def sniff(path: str | Path, head: bytes) -> bool:
    """True for a directory holding one mapping/synthesis pair, or a file whose pickle starts
    with MobileStyleGAN's ``{"params": {... "style_dim" ...}, "ckpt": ...}``.

    Args:
        path: A directory or a file.
        head: The file's first bytes; if shorter than 4 KiB the first 4 KiB are read from ``path``
            (the keys sit about 100-300 bytes into a torch zip). Ignored for directories.
    """
    path = Path(path)
    if path.is_dir():
        try:
            find_pair(path)
        except CheckpointError:
            return False
        return True
    window = head[:_SNIFF_BYTES]
    if len(window) < _SNIFF_BYTES:  # a short head (a caller's 64 bytes) may stop before the keys
        try:
            with open(path, "rb") as fh:
                window = fh.read(_SNIFF_BYTES)
        except OSError:
            return False
    return all(_has_pickled_str(window, s) for s in ("params", "style_dim", "ckpt"))


def _has_pickled_str(data: bytes, s: str) -> bool:
    raw = s.encode()
    # BINUNICODE (protocol 2, torch.save's default) or SHORT_BINUNICODE (protocol 4+).
    return b"X" + len(raw).to_bytes(4, "little") + raw in data or b"\x8c" + bytes([len(raw)]) + raw in data


def find_pair(directory: str | Path) -> tuple[Path, Path]:
    """The ``(mapping, synthesis)`` files in ``directory``.

    Files count if they end in .ckpt/.pt/.pth and their name contains ``mapping`` or
    ``synthesis``; a pair is two names equal up to that word (``x_mapping_network.ckpt`` and
    ``x_synthesis_network.ckpt``). Exactly one pair must exist.
    """
    directory = Path(directory)
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.suffix.lower() in _SUFFIXES:
            kind_key = _kind_and_key(p.name)
            if kind_key is not None:
                found.setdefault(kind_key[1], {})[kind_key[0]] = p
    pairs = [(d["mapping"], d["synthesis"]) for d in found.values() if len(d) == 2]
    if len(pairs) == 1:
        return pairs[0]
    if not pairs:
        raise CheckpointError(
            f"no MobileStyleGAN mapping/synthesis file pair in {directory} (looked for two .ckpt/.pt/.pth "
            f"files whose names differ only by 'mapping'/'synthesis', e.g. {FFHQ_FILE_NAMES[0]} and "
            f"{FFHQ_FILE_NAMES[1]}); pass both files to teacher.formats.mobilestylegan.read_pair()"
        )
    names = "; ".join(f"{m.name} + {s.name}" for m, s in pairs)
    raise CheckpointError(
        f"{len(pairs)} MobileStyleGAN file pairs in {directory} ({names}); pass one file of the pair you want"
    )


def _kind_and_key(name: str) -> tuple[str, str] | None:
    low = name.lower()
    kinds = [k for k in ("mapping", "synthesis") if k in low]
    if len(kinds) != 1:
        return None
    return kinds[0], low.replace(kinds[0], "*")


def read(path: str | Path) -> Checkpoint:
    """Read a MobileStyleGAN teacher from a directory or from either file of a pair.

    Raises:
        CheckpointError: No partner file is found next to a single file (the message says how to
            pass both), or any file does not match the layout (missing / unexpected / mis-shaped
            keys are named).
    """
    path = Path(path)
    if path.is_dir():
        return read_pair(*find_pair(path))
    loaded = _load(path)
    kind, params, _ = loaded
    other = "synthesis" if kind == "mapping" else "mapping"
    partner = None
    kind_key = _kind_and_key(path.name)
    if kind_key is not None and kind_key[0] == kind:
        partners = [
            p
            for p in sorted(path.parent.iterdir())
            if p.is_file() and p.suffix.lower() in _SUFFIXES and _kind_and_key(p.name) == (other, kind_key[1])
        ]
        partner = partners[0] if len(partners) == 1 else None
    if partner is None:
        what = (
            f"synthesis network ({params.get('size')} px, style_dim {params.get('style_dim')})"
            if kind == "synthesis"
            else f"mapping network ({params.get('n_layers')} layers)"
        )
        raise CheckpointError(
            f"{path} is MobileStyleGAN's {what} file, but a StyleGAN2 generator needs both halves and "
            f"its {other} network file was not found next to it (same name with '{kind}' -> '{other}'). "
            "Pass the directory holding both files, or call "
            "teacher.formats.mobilestylegan.read_pair(mapping_path, synthesis_path)."
        )
    if kind == "mapping":
        return _convert(path, loaded, partner, _load(partner))
    return _convert(partner, _load(partner), path, loaded)


def from_lightning(state: Mapping[str, Any], what: str) -> Checkpoint:
    """The teacher inside a MobileStyleGAN.pytorch Lightning training checkpoint (its ``Distiller``'s
    ``state_dict``): ``mapping_net.*`` and ``synthesis_net.*`` are the split files' two state dicts, whose
    ``params`` are read off the shapes here; ``style_mean`` ``[1, num_ws, w_dim]`` is the truncation centre
    (w_avg). The student, losses and evaluation networks in the same file are ignored (``extra``)."""
    mapping = {k[len("mapping_net.") :]: v for k, v in state.items() if k.startswith("mapping_net.")}
    synthesis = {k[len("synthesis_net.") :]: v for k, v in state.items() if k.startswith("synthesis_net.")}
    try:
        n_layers = sum(1 for k in mapping if k.endswith(".weight") and k.startswith("layers."))
        style_dim = int(mapping["layers.1.weight"].shape[0])
        blocks = sum(1 for k in synthesis if k.startswith("layers.") and k.endswith(".conv2.conv.weight"))
        channels = [int(synthesis["input.input"].shape[1])]
        channels += [int(synthesis[f"layers.{j}.conv2.conv.weight"].shape[1]) for j in range(blocks)]
    except KeyError as err:
        raise CheckpointError(f"{what}: the teacher in this MobileStyleGAN.pytorch checkpoint lacks {err}") from None
    m_params = {"style_dim": style_dim, "n_layers": n_layers}
    s_params = {"size": 4 * 2**blocks, "style_dim": style_dim, "channels": channels}
    path = Path(what)
    ck = _convert(path, ("mapping", m_params, mapping), path, ("synthesis", s_params, synthesis))
    style_mean = state.get("style_mean")
    if style_mean is not None:
        w_avg = style_mean.reshape(-1, style_dim)[0].detach().to(torch.float32).clone()
        check_state_dict(f"style_mean in {what}", {"mapping.w_avg": w_avg}, {"mapping.w_avg": (style_dim,)})
        ck.g_state["mapping.w_avg"] = w_avg
        ck.extra["w_avg_missing"] = False
    ck.source_format = "mobilestylegan-lightning"
    ck.extra["ignored"] = sorted({k.split(".")[0] for k in state} - {"mapping_net", "synthesis_net", "style_mean"})
    return ck


def read_pair(mapping_path: str | Path, synthesis_path: str | Path) -> Checkpoint:
    """Convert a mapping file and a synthesis file to one native generator checkpoint."""
    mapping_path, synthesis_path = Path(mapping_path), Path(synthesis_path)
    return _convert(mapping_path, _load(mapping_path), synthesis_path, _load(synthesis_path))


Loaded = tuple[str, dict[str, Any], dict[str, torch.Tensor]]


def _convert(mapping_path: Path, mapping: Loaded, synthesis_path: Path, synthesis: Loaded) -> Checkpoint:
    (m_kind, m_params, m_state), (s_kind, s_params, s_state) = mapping, synthesis
    if m_kind != "mapping":
        raise CheckpointError(f"{mapping_path} holds a MobileStyleGAN {m_kind} network, not the mapping network")
    if s_kind != "synthesis":
        raise CheckpointError(f"{synthesis_path} holds a MobileStyleGAN {s_kind} network, not the synthesis network")
    cfg = _config(m_params, s_params, mapping_path, synthesis_path)

    m_what = f"MobileStyleGAN mapping file {mapping_path}"
    s_what = f"MobileStyleGAN synthesis file {synthesis_path}"
    m_map, m_shapes, _ = _mapping_table(cfg)
    s_map, s_shapes, s_buffers = _synthesis_table(cfg)
    check_state_dict(m_what, m_state, m_shapes)
    check_state_dict(s_what, s_state, s_shapes)
    _check_fir_buffers(s_what, s_state, s_buffers, cfg.resample_filter)

    native = generator_shapes(cfg)
    g_state: dict[str, torch.Tensor] = {}
    for src_state, key_map in ((m_state, m_map), (s_state, s_map)):
        for src, dst in key_map.items():
            g_state[dst] = src_state[src].detach().to(torch.float32).reshape(native[dst]).contiguous()
    for key, shape in native.items():
        if key.endswith(".noise_const") or key == "mapping.w_avg":
            g_state[key] = torch.zeros(shape)
    check_state_dict(f"MobileStyleGAN teacher {mapping_path} + {synthesis_path}", g_state, native)

    extra: dict[str, Any] = {
        "noise_const_missing": True,
        "w_avg_missing": True,
        "mapping_params": dict(m_params),
        "synthesis_params": dict(s_params),
        "mapping_path": str(mapping_path),
        "synthesis_path": str(synthesis_path),
    }
    return Checkpoint(source_format=SOURCE_FORMAT, g_config=cfg, g_state=g_state, extra=extra)


# ---------------------------------------------------------------------------------------------
# Loading and checking


def _load(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """torch.load a split file; return (kind, params, state_dict)."""
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} as a torch file of tensors: {e}") from e
    if not isinstance(obj, Mapping) or set(obj) != {"params", "ckpt"}:
        keys = sorted(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a MobileStyleGAN split file: expected keys ['ckpt', 'params'], got {keys}"
        )
    params, state = obj["params"], obj["ckpt"]
    if not isinstance(params, Mapping) or not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'params' and 'ckpt' must both be dicts")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: 'ckpt' entries that are not tensors: {not_tensors}")
    if "n_layers" in params:
        kind, allowed, required = "mapping", _MAPPING_PARAMS, ("style_dim", "n_layers")
    elif "channels" in params:
        kind, allowed, required = "synthesis", _SYNTHESIS_PARAMS, ("size", "style_dim", "channels")
    else:
        raise CheckpointError(f"{path}: params {sorted(params)} are neither a mapping nor a synthesis network's")
    unknown = sorted(set(params) - allowed)
    missing = [k for k in required if k not in params]
    if unknown or missing:
        raise CheckpointError(f"{path}: {kind} params: missing {missing}, unknown {unknown} (known: {sorted(allowed)})")
    return kind, dict(params), dict(state)


def _config(m: dict[str, Any], s: dict[str, Any], m_path: Path, s_path: Path) -> GeneratorConfig:
    if m["style_dim"] != s["style_dim"]:
        raise CheckpointError(f"style_dim differs: {m['style_dim']} in {m_path}, {s['style_dim']} in {s_path}")
    channels = [int(c) for c in s["channels"]]
    size = int(s["size"])
    if size != 4 * 2 ** (len(channels) - 1):
        top = 4 * 2 ** (len(channels) - 1)
        raise CheckpointError(f"{s_path}: size {size} does not fit {len(channels)} channel entries (4 px .. {top} px)")
    if tuple(s.get("input_shape", (4, 4))) != (4, 4):
        raise CheckpointError(f"{s_path}: input_shape {s['input_shape']} is not supported (only 4x4)")
    try:
        return GeneratorConfig(
            z_dim=int(m["style_dim"]),
            w_dim=int(m["style_dim"]),
            img_resolution=size,
            channels={4 * 2**k: c for k, c in enumerate(channels)},
            img_channels=_IMG_CHANNELS,
            mapping_layers=int(m["n_layers"]),
            mapping_lr_mul=float(m.get("lr_mlp", _DEFAULT_LR_MLP)),
            resample_filter=tuple(s.get("blur_kernel", _DEFAULT_BLUR)),
        )
    except ValueError as e:
        raise CheckpointError(f"{s_path}: unsupported params: {e}") from e


Table = tuple[dict[str, str], dict[str, tuple[int, ...]], list[str]]


def _mapping_table(cfg: GeneratorConfig) -> Table:
    """Source key -> native key, source key -> shape (no buffers)."""
    key_map: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    d = cfg.w_dim
    for i in range(cfg.mapping_layers):
        key_map[f"layers.{i + 1}.weight"] = f"mapping.fc{i}.weight"
        key_map[f"layers.{i + 1}.bias"] = f"mapping.fc{i}.bias"
        shapes[f"layers.{i + 1}.weight"] = (d, d)
        shapes[f"layers.{i + 1}.bias"] = (d,)
    return key_map, shapes, []


def _synthesis_table(cfg: GeneratorConfig) -> Table:
    """Source key -> native key, source key -> shape (parameters and FIR buffers), buffer keys."""
    key_map: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    buffers: list[str] = []
    d, ch, taps = cfg.w_dim, cfg.channels, len(cfg.resample_filter)

    def add(src: str, dst: str | None, shape: tuple[int, ...]) -> None:
        shapes[src] = shape
        if dst is None:
            buffers.append(src)
        else:
            key_map[src] = dst

    def styled_conv(src: str, dst: str, c_in: int, c_out: int, up: bool) -> None:
        add(f"{src}.conv.weight", f"{dst}.weight", (1, c_out, c_in, _KERNEL, _KERNEL))
        add(f"{src}.conv.modulation.weight", f"{dst}.affine.weight", (c_in, d))
        add(f"{src}.conv.modulation.bias", f"{dst}.affine.bias", (c_in,))
        add(f"{src}.noise.weight", f"{dst}.noise_strength", (1,))
        add(f"{src}.activate.bias", f"{dst}.bias", (c_out,))
        if up:
            add(f"{src}.conv.blur.kernel", None, (taps, taps))

    def to_rgb(src: str, dst: str, c: int, up: bool) -> None:
        add(f"{src}.conv.weight", f"{dst}.weight", (1, _IMG_CHANNELS, c, 1, 1))
        add(f"{src}.conv.modulation.weight", f"{dst}.affine.weight", (c, d))
        add(f"{src}.conv.modulation.bias", f"{dst}.affine.bias", (c,))
        add(f"{src}.bias", f"{dst}.bias", (1, _IMG_CHANNELS, 1, 1))
        if up:
            add(f"{src}.upsample.kernel", None, (taps, taps))

    add("input.input", "synthesis.b4.const", (1, ch[4], 4, 4))
    styled_conv("conv1", "synthesis.b4.conv1", ch[4], ch[4], up=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", ch[4], up=False)
    for j, res in enumerate(cfg.resolutions[1:]):
        src, dst = f"layers.{j}", f"synthesis.b{res}"
        styled_conv(f"{src}.conv1", f"{dst}.conv0", ch[res // 2], ch[res], up=True)
        styled_conv(f"{src}.conv2", f"{dst}.conv1", ch[res], ch[res], up=False)
        to_rgb(f"{src}.to_rgb", f"{dst}.torgb", ch[res], up=True)
    add("upsample.kernel", None, (taps, taps))
    return key_map, shapes, buffers


def upsample_kernel(taps: tuple[float, ...]) -> torch.Tensor:
    """The 2-D FIR buffer MobileStyleGAN (like rosinality) stores: outer(f, f) / sum**2 * 4."""
    f = torch.tensor(taps, dtype=torch.float32)
    k = f[None, :] * f[:, None]
    return k / k.sum() * 4


def _check_fir_buffers(what: str, state: Mapping[str, torch.Tensor], keys: list[str], taps: tuple[float, ...]) -> None:
    expected = upsample_kernel(taps)
    bad = [k for k in keys if not torch.allclose(state[k].float(), expected, rtol=0, atol=1e-6)]
    if bad:
        shown = ", ".join(bad[:6]) + (f", ... ({len(bad) - 6} more)" if len(bad) > 6 else "")
        raise CheckpointError(
            f"{what}: FIR buffer(s) {shown} differ from outer(f, f) / sum**2 * 4 for f = {list(taps)}; "
            "a different blur kernel needs 'blur_kernel' in params"
        )
