"""The native state-dict layout of the teacher networks, as a function of the config.

Every reader converts its format to these keys; ``teacher.Generator(cfg).state_dict()`` has exactly
these keys and shapes (a test checks it). Names follow NVIDIA's stylegan2-ada-pytorch, minus its
constant ``resample_filter`` buffers. All weights are stored *raw* (equalized learning rate): the
run-time gains are applied in the forward pass, as in both reference implementations:

- ``mapping.fc{i}.weight`` [w_dim, in] times ``lr_mul / sqrt(in)``; ``.bias`` [w_dim] times ``lr_mul``.
  ``in`` is z_dim for ``fc0`` and w_dim after. ``mapping.w_avg`` [w_dim] is the truncation centre.
- ``synthesis.b4.const`` [C4, 4, 4].
- ``synthesis.b{r}.conv{0,1}``: ``weight`` [C_out, C_in, 3, 3] (times 1/sqrt(C_in*9) before
  demodulation), ``bias`` [C_out], ``affine.weight`` [C_in, w_dim] (times 1/sqrt(w_dim)),
  ``affine.bias`` [C_in] (initialised to 1), ``noise_strength`` [] (scalar),
  ``noise_const`` [r, r] (the stored "const" noise). ``b4`` has only ``conv1``; ``conv0`` of
  ``b{r>4}`` up-samples from C_{r/2} to C_r (transposed conv, stride 2, no flip: same weights as
  NVIDIA's ``conv0`` and rosinality's ``convs.{2j}``), ``conv1`` maps C_r to C_r.
- ``synthesis.b{r}.torgb``: ``weight`` [img_channels, C_r, 1, 1], ``bias`` [img_channels],
  ``affine.weight`` [C_r, w_dim], ``affine.bias`` [C_r]; styles times 1/sqrt(C_r); no demodulation.

Discriminator (no prefix), block ``b{r}`` maps C_r to C_{r/2}:

- ``b{R}.fromrgb.weight`` [C_R, img_channels, 1, 1], ``.bias`` [C_R] (R = img_resolution only).
- ``b{r}.conv0.weight`` [C_r, C_r, 3, 3], ``.bias``; ``b{r}.conv1.weight`` [C_{r/2}, C_r, 3, 3], ``.bias``
  (down-sampling); ``b{r}.skip.weight`` [C_{r/2}, C_r, 1, 1] (no bias), for r in R..8.
- ``b4.conv.weight`` [C4, C4 + mbstd_num_channels, 3, 3], ``.bias``; ``b4.fc.weight`` [C4, C4*16],
  ``.bias``; ``b4.out.weight`` [1, C4], ``.bias`` [1]. Conv weights times 1/sqrt(fan_in).
"""

from __future__ import annotations

from teacher.config import DiscriminatorConfig, GeneratorConfig

Shape = tuple[int, ...]


def generator_shapes(cfg: GeneratorConfig) -> dict[str, Shape]:
    """Key -> shape of the native generator state dict for ``cfg``."""
    s: dict[str, Shape] = {}
    for i in range(cfg.mapping_layers):
        fan_in = cfg.z_dim if i == 0 else cfg.w_dim
        s[f"mapping.fc{i}.weight"] = (cfg.w_dim, fan_in)
        s[f"mapping.fc{i}.bias"] = (cfg.w_dim,)
    s["mapping.w_avg"] = (cfg.w_dim,)
    ch = cfg.channels
    s["synthesis.b4.const"] = (ch[4], 4, 4)
    for res in cfg.resolutions:
        convs = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for name in convs:
            c_in = ch[res // 2] if name == "conv0" else ch[res]
            p = f"synthesis.b{res}.{name}"
            s[f"{p}.weight"] = (ch[res], c_in, 3, 3)
            s[f"{p}.bias"] = (ch[res],)
            s[f"{p}.affine.weight"] = (c_in, cfg.w_dim)
            s[f"{p}.affine.bias"] = (c_in,)
            s[f"{p}.noise_strength"] = ()
            s[f"{p}.noise_const"] = (res, res)
        p = f"synthesis.b{res}.torgb"
        s[f"{p}.weight"] = (cfg.img_channels, ch[res], 1, 1)
        s[f"{p}.bias"] = (cfg.img_channels,)
        s[f"{p}.affine.weight"] = (ch[res], cfg.w_dim)
        s[f"{p}.affine.bias"] = (ch[res],)
    return s


def discriminator_shapes(cfg: DiscriminatorConfig) -> dict[str, Shape]:
    """Key -> shape of the native discriminator state dict for ``cfg``."""
    ch = cfg.channels
    top = cfg.img_resolution
    s: dict[str, Shape] = {
        f"b{top}.fromrgb.weight": (ch[top], cfg.img_channels, 1, 1),
        f"b{top}.fromrgb.bias": (ch[top],),
    }
    res = top
    while res > 4:
        s[f"b{res}.conv0.weight"] = (ch[res], ch[res], 3, 3)
        s[f"b{res}.conv0.bias"] = (ch[res],)
        s[f"b{res}.conv1.weight"] = (ch[res // 2], ch[res], 3, 3)
        s[f"b{res}.conv1.bias"] = (ch[res // 2],)
        s[f"b{res}.skip.weight"] = (ch[res // 2], ch[res], 1, 1)
        res //= 2
    s["b4.conv.weight"] = (ch[4], ch[4] + cfg.mbstd_num_channels, 3, 3)
    s["b4.conv.bias"] = (ch[4],)
    s["b4.fc.weight"] = (ch[4], ch[4] * 16)
    s["b4.fc.bias"] = (ch[4],)
    s["b4.out.weight"] = (1, ch[4])
    s["b4.out.bias"] = (1,)
    return s
