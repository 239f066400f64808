"""rosinality/stylegan2-pytorch ``.pt`` checkpoints (``g_ema`` / ``g`` / ``d``, ``latent_avg``).

Key map (j = 0.. over resolutions 8..R, r = 8 * 2**j):
``style.{i+1}`` -> ``mapping.fc{i}``; ``input.input`` [1,C,4,4] -> ``synthesis.b4.const``;
``conv1`` / ``to_rgb1`` -> ``b4.conv1`` / ``b4.torgb``; ``convs.{2j}``, ``convs.{2j+1}``,
``to_rgbs.{j}`` -> ``b{r}.conv0``, ``b{r}.conv1``, ``b{r}.torgb``; ``noises.noise_{i}`` -> the i-th
conv layer's ``noise_const``. Within a conv: ``conv.weight`` [1,O,I,k,k] -> ``weight``,
``conv.modulation`` -> ``affine``, ``noise.weight`` [1] -> ``noise_strength`` [], ``activate.bias``
-> ``bias``; ToRGB ``bias`` [1,C,1,1] -> [C]. The FIR ``kernel`` buffers are checked, then dropped.
Discriminator: ``convs.0`` -> ``b{R}.fromrgb``; ``convs.{i}.conv1`` / ``conv2`` / ``skip`` ->
``b{R/2**(i-1)}.conv0`` / ``conv1`` / ``skip``; ``final_conv`` -> ``b4.conv``; ``final_linear.0`` /
``.1`` -> ``b4.fc`` / ``b4.out``.
"""

from __future__ import annotations

import re

import torch

from teacher.config import DiscriminatorConfig, GeneratorConfig
from teacher.formats.common import Checkpoint, CheckpointError, check_state_dict
from teacher.formats.layout import discriminator_shapes, generator_shapes
from teacher.ops import setup_filter

W_AVG_SAMPLES = 4096  # samples of the w mean when a checkpoint has no latent_avg
W_AVG_SEED = 0


def is_rosinality_dict(obj: object) -> bool:
    if not isinstance(obj, dict):
        return False
    g = obj.get("g_ema", obj.get("g"))
    return isinstance(g, dict) and "input.input" in g and "style.1.weight" in g


def from_dict(obj: dict, path: str) -> Checkpoint:
    """Convert a loaded rosinality checkpoint dict (``g_ema`` preferred over ``g``)."""
    which = "g_ema" if "g_ema" in obj else "g"
    g_src = obj[which]
    g_cfg, g_state, blur = _convert_generator(g_src, f"{path} [{which}]")
    ckpt = Checkpoint(source_format="rosinality", g_config=g_cfg, g_state=g_state, extra={"generator_key": which})
    _check_kernels(g_src, blur, f"{path} [{which}]")
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None:
        latent_avg = torch.as_tensor(latent_avg).reshape(-1)
        if latent_avg.shape != (g_cfg.w_dim,):
            raise CheckpointError(f"{path}: latent_avg has shape {tuple(latent_avg.shape)}, expected ({g_cfg.w_dim},)")
        g_state["mapping.w_avg"] = latent_avg.float().clone()
        ckpt.extra["w_avg_source"] = "latent_avg"
    else:
        ckpt.extra["w_avg_source"] = f"mean of mapping(z) over {W_AVG_SAMPLES} z (seed {W_AVG_SEED})"
        g_state["mapping.w_avg"] = torch.zeros(g_cfg.w_dim)  # filled below, once the state is complete
    check_state_dict(f"rosinality {which} in {path}", g_state, generator_shapes(g_cfg))
    if latent_avg is None:
        g_state["mapping.w_avg"] = estimate_w_avg(g_cfg, g_state)
    if isinstance(obj.get("d"), dict):
        d_cfg, d_state = _convert_discriminator(obj["d"], f"{path} [d]")
        check_state_dict(f"rosinality d in {path}", d_state, discriminator_shapes(d_cfg))
        ckpt.d_config, ckpt.d_state = d_cfg, d_state
    if "args" in obj:
        ckpt.extra["args"] = (
            {k: v for k, v in vars(obj["args"]).items() if isinstance(v, (int, float, str, bool))}
            if hasattr(obj["args"], "__dict__")
            else {}
        )
    return ckpt


def estimate_w_avg(cfg: GeneratorConfig, g_state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the mapping network's output over a fixed seeded set of z."""
    from teacher.mapping import MappingNetwork

    m = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
    m.load_state_dict({k[len("mapping.") :]: v for k, v in g_state.items() if k.startswith("mapping.")})
    z = torch.randn([W_AVG_SAMPLES, cfg.z_dim], generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return m.embed(z).mean(0)


def _take(src: dict, key: str, what: str) -> torch.Tensor:
    if key not in src:
        raise CheckpointError(f"{what}: missing key {key!r}")
    return src[key]


def _convert_generator(
    src: dict, what: str
) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in src:
        n_mlp += 1
    n_torgb = len({m.group(1) for k in src if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
    res = 4 * 2**n_torgb
    if n_mlp == 0 or res < 8:
        raise CheckpointError(f"{what}: not a StyleGAN2 generator (found {n_mlp} mapping layers, {n_torgb} to_rgbs)")
    const = _take(src, "input.input", what)
    channels = {4: const.shape[1]}
    for j in range(n_torgb):
        channels[8 * 2**j] = _take(src, f"convs.{2 * j}.conv.weight", what).shape[1]
    w1 = _take(src, "style.1.weight", what)
    try:
        cfg = GeneratorConfig(
            z_dim=w1.shape[1],
            w_dim=w1.shape[0],
            img_resolution=res,
            channels=channels,
            img_channels=_take(src, "to_rgb1.conv.weight", what).shape[1],
            mapping_layers=n_mlp,
        )
    except ValueError as err:
        raise CheckpointError(f"{what}: inconsistent architecture ({err})") from err
    used: set[str] = set()

    def get(key: str) -> torch.Tensor:
        used.add(key)
        return _take(src, key, what)

    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = get(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = get(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = get("input.input")[0]
    convs = [("conv1", "synthesis.b4.conv1")]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    for j in range(n_torgb):
        r = 8 * 2**j
        convs += [(f"convs.{2 * j}", f"synthesis.b{r}.conv0"), (f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1")]
        rgbs.append((f"to_rgbs.{j}", f"synthesis.b{r}.torgb"))
    for i, (s, d) in enumerate(convs):
        out[f"{d}.weight"] = get(f"{s}.conv.weight")[0]
        out[f"{d}.affine.weight"] = get(f"{s}.conv.modulation.weight")
        out[f"{d}.affine.bias"] = get(f"{s}.conv.modulation.bias")
        out[f"{d}.noise_strength"] = get(f"{s}.noise.weight").reshape([])
        out[f"{d}.bias"] = get(f"{s}.activate.bias")
        out[f"{d}.noise_const"] = get(f"noises.noise_{i}")[0, 0]
    for s, d in rgbs:
        out[f"{d}.weight"] = get(f"{s}.conv.weight")[0]
        out[f"{d}.affine.weight"] = get(f"{s}.conv.modulation.weight")
        out[f"{d}.affine.bias"] = get(f"{s}.conv.modulation.bias")
        out[f"{d}.bias"] = get(f"{s}.bias").reshape(-1)
    blur = {k: v for k, v in src.items() if k.endswith(("blur.kernel", "upsample.kernel"))}
    unexpected = sorted(set(src) - used - set(blur))
    if unexpected:
        raise CheckpointError(f"{what}: {len(unexpected)} unexpected key(s): {', '.join(unexpected[:12])}")
    return cfg, {k: v.float().clone() for k, v in out.items()}, blur


def _check_kernels(src: dict, blur: dict, what: str) -> None:
    """The FIR buffers must be the [1,3,3,1] kernel we use (x4 for up-sampling)."""
    want = setup_filter([1, 3, 3, 1], gain=4)
    for k, v in blur.items():
        if v.shape != want.shape or not torch.allclose(v.float(), want, atol=1e-6):
            raise CheckpointError(
                f"{what}: {k} is not the standard [1,3,3,1] blur kernel; custom blur kernels are not supported"
            )


def _convert_discriminator(src: dict, what: str) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    fromrgb = _take(src, "convs.0.0.weight", what)
    n_blocks = len({m.group(1) for k in src if (m := re.match(r"convs\.(\d+)\.conv1\.", k))})
    res = 4 * 2**n_blocks
    channels = {res: fromrgb.shape[0]}
    r = res
    for i in range(1, n_blocks + 1):
        channels[r // 2] = _take(src, f"convs.{i}.conv2.1.weight", what).shape[0]
        r //= 2
    final = _take(src, "final_conv.0.weight", what)
    cfg = DiscriminatorConfig(
        img_resolution=res,
        channels=channels,
        img_channels=fromrgb.shape[1],
        mbstd_num_channels=final.shape[1] - channels[4],
    )
    used: set[str] = set()

    def get(key: str) -> torch.Tensor:
        used.add(key)
        return _take(src, key, what)

    out = {f"b{res}.fromrgb.weight": get("convs.0.0.weight"), f"b{res}.fromrgb.bias": get("convs.0.1.bias")}
    r = res
    for i in range(1, n_blocks + 1):
        out[f"b{r}.conv0.weight"] = get(f"convs.{i}.conv1.0.weight")
        out[f"b{r}.conv0.bias"] = get(f"convs.{i}.conv1.1.bias")
        out[f"b{r}.conv1.weight"] = get(f"convs.{i}.conv2.1.weight")
        out[f"b{r}.conv1.bias"] = get(f"convs.{i}.conv2.2.bias")
        out[f"b{r}.skip.weight"] = get(f"convs.{i}.skip.1.weight")
        r //= 2
    out["b4.conv.weight"] = get("final_conv.0.weight")
    out["b4.conv.bias"] = get("final_conv.1.bias")
    out["b4.fc.weight"] = get("final_linear.0.weight")
    out["b4.fc.bias"] = get("final_linear.0.bias")
    out["b4.out.weight"] = get("final_linear.1.weight")
    out["b4.out.bias"] = get("final_linear.1.bias")
    want = setup_filter([1, 3, 3, 1])
    for k in sorted(set(src) - used):
        if not k.endswith(".kernel"):
            raise CheckpointError(f"{what}: unexpected key {k!r}")
        if src[k].shape != want.shape or not torch.allclose(src[k].float(), want, atol=1e-6):
            raise CheckpointError(f"{what}: {k} is not the standard [1,3,3,1] blur kernel")
    return cfg, {k: v.float().clone() for k, v in out.items()}


def to_dict(ckpt: Checkpoint) -> dict:
    """The inverse map: a native checkpoint as a rosinality ``{"g_ema", "latent_avg"[, "d"]}`` dict
    (what rosinality's ``generate.py`` / ``projector.py`` load)."""
    if ckpt.g_config is None:
        raise CheckpointError("rosinality files need a generator")
    cfg, s = ckpt.g_config, ckpt.g_state
    up_kernel, down_kernel = setup_filter([1, 3, 3, 1], gain=4), setup_filter([1, 3, 3, 1])
    g: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        g[f"style.{i + 1}.weight"] = s[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.bias"]
    g["input.input"] = s["synthesis.b4.const"][None]
    convs = [("conv1", "synthesis.b4.conv1")]
    rgbs = [("to_rgb1", "synthesis.b4.torgb")]
    for j, r in enumerate(cfg.resolutions[1:]):
        convs += [(f"convs.{2 * j}", f"synthesis.b{r}.conv0"), (f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1")]
        rgbs.append((f"to_rgbs.{j}", f"synthesis.b{r}.torgb"))
        g[f"convs.{2 * j}.conv.blur.kernel"] = up_kernel.clone()
        g[f"to_rgbs.{j}.upsample.kernel"] = up_kernel.clone()
    for i, (d, n) in enumerate(convs):
        g[f"{d}.conv.weight"] = s[f"{n}.weight"][None]
        g[f"{d}.conv.modulation.weight"] = s[f"{n}.affine.weight"]
        g[f"{d}.conv.modulation.bias"] = s[f"{n}.affine.bias"]
        g[f"{d}.noise.weight"] = s[f"{n}.noise_strength"].reshape(1)
        g[f"{d}.activate.bias"] = s[f"{n}.bias"]
        g[f"noises.noise_{i}"] = s[f"{n}.noise_const"][None, None]
    for d, n in rgbs:
        g[f"{d}.conv.weight"] = s[f"{n}.weight"][None]
        g[f"{d}.conv.modulation.weight"] = s[f"{n}.affine.weight"]
        g[f"{d}.conv.modulation.bias"] = s[f"{n}.affine.bias"]
        g[f"{d}.bias"] = s[f"{n}.bias"].reshape(1, -1, 1, 1)
    out: dict = {"g_ema": {k: v.clone() for k, v in g.items()}, "latent_avg": s["mapping.w_avg"].clone()}
    if ckpt.d_config is not None:
        ds, top = ckpt.d_state, ckpt.d_config.img_resolution
        d = {"convs.0.0.weight": ds[f"b{top}.fromrgb.weight"], "convs.0.1.bias": ds[f"b{top}.fromrgb.bias"]}
        r, i = top, 1
        while r > 4:
            d[f"convs.{i}.conv1.0.weight"] = ds[f"b{r}.conv0.weight"]
            d[f"convs.{i}.conv1.1.bias"] = ds[f"b{r}.conv0.bias"]
            d[f"convs.{i}.conv2.0.kernel"] = down_kernel.clone()
            d[f"convs.{i}.conv2.1.weight"] = ds[f"b{r}.conv1.weight"]
            d[f"convs.{i}.conv2.2.bias"] = ds[f"b{r}.conv1.bias"]
            d[f"convs.{i}.skip.0.kernel"] = down_kernel.clone()
            d[f"convs.{i}.skip.1.weight"] = ds[f"b{r}.skip.weight"]
            r, i = r // 2, i + 1
        d.update(
            {
                "final_conv.0.weight": ds["b4.conv.weight"],
                "final_conv.1.bias": ds["b4.conv.bias"],
                "final_linear.0.weight": ds["b4.fc.weight"],
                "final_linear.0.bias": ds["b4.fc.bias"],
                "final_linear.1.weight": ds["b4.out.weight"],
                "final_linear.1.bias": ds["b4.out.bias"],
            }
        )
        out["d"] = {k: v.clone() for k, v in d.items()}
    return out
