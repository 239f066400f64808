"""Lean inference graphs of a student: the form that is exported to ONNX and OpenVINO.

Built from a (fused or unfused) student, without touching it, with everything static folded away:

- demodulation folded into the weights (:meth:`MobileSynthesisNetwork.fuse`): no Pow/ReduceSum/Sqrt;
- auxiliary heads gone; the last head's weights carry the final inverse Haar transform (pixel shuffle);
- every style affine (with its ``1/sqrt(fan_in)`` scale folded in) computed by one matmul per sample
  (W input) or one per distinct W+ index (W+ input), before any feature map is touched;
- each IDWT up-sampler lowered to: one per-sample channel scale (the up-sampler's affine times the
  next conv's modulation, merged), a per-channel 4 -> 4 band mix, and a pixel shuffle
  (DepthToSpace). The conv that feeds an up-sampler has its output channels permuted to the
  band-interleaved order ``4c + k`` (LL, B0, B1, B2 of channel c) so that the mix is a grouped 1x1
  conv (``idwt="conv"``) or a broadcast MatMul (``idwt="matmul"``) with no channel gathers;
- the noise maps premultiplied by their learned strengths (baked constants or graph inputs);
- the mapping network's equalized-lr gains and the lrelu gain folded into the weights, truncation
  optionally baked in.

All outputs equal the PyTorch student's to float rounding (tested to 1e-5).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from mobilestylegan.student.wavelets import HAAR
from teacher.mapping import MappingNetwork

W_INPUTS = ("w", "wplus")
# How a lean graph gets its noise (the teacher's ``noise_mode`` of a synthesis call is another thing: const, random,
# none): the stored maps baked in as constants, one graph input per layer, or none at all.
NOISE_SOURCES = ("const", "input", "none")
IDWT_MODES = ("conv", "matmul")
MODULATION_MODES = ("weights", "activations")


def band_interleave(channels: int) -> torch.Tensor:
    """Index ``p`` with ``new[4c + k] = old[p[4c + k]]``: student wavelet layout -> band-interleaved."""
    c = channels // 4
    idx = [[ch] + [c + 3 * ch + b for b in range(3)] for ch in range(c)]
    return torch.tensor(idx).reshape(-1)


class _Affine:
    """One style affine of the student: which ws index it reads, its folded weight and bias."""

    def __init__(self, linear: nn.Linear, ws_index: int, scale: float = 1.0, rows: torch.Tensor | None = None) -> None:
        w, b = linear.weight.detach() * scale, linear.bias.detach() * scale
        if rows is not None:
            w, b = w[rows], b[rows]
        self.weight, self.bias, self.ws_index = w, b, ws_index


class LeanSynthesis(nn.Module):
    """The student's synthesis network as a lean inference graph.

    Args:
        synthesis: A student synthesis network (fused or not; it is not modified).
        w_input: ``w`` (one w per sample, ``[B, w_dim]``) or ``wplus`` (``[B, num_ws, w_dim]``).
        noise: ``const`` (the stored maps, baked in), ``input`` (one graph input per layer,
            ``[B, 1, r, r]``, unit-variance noise as the student takes it) or ``none``.
        idwt: Band-mix lowering: ``conv`` (grouped 1x1 conv) or ``matmul``.
        modulation: Where the per-sample styles act. ``weights``: folded into the weights of the
            band mix, of each second pointwise conv and of the head at run time (tiny tensors; the batch
            becomes conv groups, so the traced graph has a fixed batch); no pass over any feature map is
            spent on modulation, which matters because the high-resolution stages are memory-bound.
            ``activations`` (default): feature maps are multiplied by the styles (works with a dynamic batch,
            and leaves every conv weight constant, as INT8 quantisation needs).
        noise_barrier: ``const`` noise only: a function each baked map passes through on its way into the graph
            (identity in value), e.g. a converter's optimisation barrier that keeps it from folding the map with the
            next bias into one ``[1, C, r, r]`` constant (C times the map). None: the maps are read as stored.
    """

    def __init__(
        self,
        synthesis: MobileSynthesisNetwork,
        w_input: str = "w",
        noise: str = "const",
        idwt: str = "conv",
        modulation: str = "activations",
        noise_barrier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("w_input", w_input, W_INPUTS),
            ("noise", noise, NOISE_SOURCES),
            ("idwt", idwt, IDWT_MODES),
            ("modulation", modulation, MODULATION_MODES),
        ):
            if value not in allowed:
                raise ValueError(f"LeanSynthesis {name} must be one of {allowed}, got {value!r}")
        if not isinstance(synthesis, MobileSynthesisNetwork):
            raise TypeError(f"LeanSynthesis needs a MobileSynthesisNetwork, got {type(synthesis).__name__}")
        src = copy.deepcopy(synthesis).float().cpu().eval()
        if not src.fused:
            src.fuse()
        if modulation == "weights" and idwt != "conv":
            raise ValueError("LeanSynthesis modulation='weights' needs idwt='conv' (the band mix takes the scales)")
        self.w_input, self.noise_mode, self.idwt_mode, self.modulation = w_input, noise, idwt, modulation
        self.noise_barrier = noise_barrier
        self.w_dim, self.num_ws, self.img_resolution = src.w_dim, src.num_ws, src.img_resolution
        self.noise_resolutions = [c.resolution for c in src.styled_convs()]
        with torch.no_grad():
            self._build(src)

    # ------------------------------------------------------------------ construction
    def _build(self, src: MobileSynthesisNetwork) -> None:
        affines: list[_Affine] = []
        # Per stage, the index range of each affine's output inside the concatenated style vector.
        self._stage0: dict = {}
        self._blocks: list[dict] = []

        def add(aff: _Affine) -> tuple[int, int]:
            start = sum(a.weight.shape[0] for a in affines)
            affines.append(aff)
            return start, start + aff.weight.shape[0]

        c0 = src.conv1.conv
        perm0 = band_interleave(c0.weight.shape[0]) if len(src.layers) else None
        self._stage0 = {"style": add(_Affine(c0.modulation, 0, c0.scale))}
        self.register_buffer("const", src.input.input.detach().clone())
        self._add_conv_params("s0", src.conv1, weight=c0.weight, perm=perm0)

        last = len(src.layers) - 1
        for i, block in enumerate(src.layers):
            c_in = block.up.modulation.weight.shape[0]
            conv1, conv2 = block.conv1.conv, block.conv2.conv
            entry = {
                # The up-sampler's scale, in band-interleaved order, and conv1's modulation (C/4),
                # multiplied per sample into one scale on the up-sampler's input.
                "up": add(_Affine(block.up.modulation, 3 * i + 1, rows=band_interleave(c_in))),
                "mod1": add(_Affine(conv1.modulation, 3 * i + 1, conv1.scale)),
                "mod2": add(_Affine(conv2.modulation, 3 * i + 2, conv2.scale)),
                "channels": c_in // 4,
            }
            perm = band_interleave(conv2.weight_permute.shape[0]) if i < last else None
            self._add_conv_params(f"b{i}c1", block.conv1, weight_dw=conv1.weight_dw, weight_pw=conv1.weight_permute)
            self._add_conv_params(
                f"b{i}c2", block.conv2, weight_dw=conv2.weight_dw, weight_pw=conv2.weight_permute, perm=perm
            )
            self._blocks.append(entry)
        head = src.layers[-1].to_img
        self._head = {"style": add(_Affine(head.conv.modulation, 3 * last + 3, head.conv.scale))}
        self.register_buffer("head_weight", head.conv.weight.detach().clone())
        self.register_buffer("head_bias", head.bias.detach().clone())
        if self.idwt_mode == "conv":  # grouped 1x1 conv weights [4C, 4, 1, 1]: one Haar matrix per channel
            for c in sorted({blk["channels"] for blk in self._blocks}):
                self.register_buffer(f"haar_conv{c}", HAAR[:, :, None, None].repeat(c, 1, 1, 1))
        else:
            self.register_buffer("haar", HAAR.clone())

        self._group_affines(affines)

    def _add_conv_params(
        self,
        name: str,
        styled: nn.Module,
        weight: torch.Tensor | None = None,
        weight_dw: torch.Tensor | None = None,
        weight_pw: torch.Tensor | None = None,
        perm: torch.Tensor | None = None,
    ) -> None:
        """Register one styled conv's weights (output channels permuted by ``perm``), bias and noise."""
        bias = styled.bias.detach().reshape(1, -1, 1, 1)
        if perm is not None:
            bias = bias[:, perm]
            weight = weight[perm] if weight is not None else None
            weight_pw = weight_pw[perm] if weight_pw is not None else None
        if weight is not None:
            self.register_buffer(f"{name}_w", weight.detach().clone())
        else:
            self.register_buffer(f"{name}_dw", weight_dw.detach().clone())
            self.register_buffer(f"{name}_pw", weight_pw.detach().clone())
        self.register_buffer(f"{name}_b", bias.clone())
        strength = styled.noise.weight.detach().reshape(1, 1, 1, 1)
        if self.noise_mode == "const":
            self.register_buffer(f"{name}_noise", styled.noise_const.detach() * strength)
        elif self.noise_mode == "input":
            self.register_buffer(f"{name}_strength", strength.clone())

    def _group_affines(self, affines: list[_Affine]) -> None:
        """Concatenate the affines: one matmul for W; one per distinct ws index for W+ (in order)."""
        self.style_dim = sum(a.weight.shape[0] for a in affines)
        if self.w_input == "w":
            self.register_buffer("style_weight", torch.cat([a.weight for a in affines]).t().contiguous())
            self.register_buffer("style_bias", torch.cat([a.bias for a in affines]))
            self._style_groups = None
            return
        # W+: affines are laid out in forward order and ws indices never decrease, so each index's
        # affines form one contiguous run of the style vector.
        groups: list[tuple[int, list[_Affine]]] = []
        for a in affines:
            if groups and groups[-1][0] == a.ws_index:
                groups[-1][1].append(a)
            else:
                groups.append((a.ws_index, [a]))
        self._style_groups = [g[0] for g in groups]
        for j, (_, members) in enumerate(groups):
            self.register_buffer(f"style_weight{j}", torch.cat([a.weight for a in members]).t().contiguous())
            self.register_buffer(f"style_bias{j}", torch.cat([a.bias for a in members]))

    # ------------------------------------------------------------------ interface
    @property
    def input_names(self) -> list[str]:
        names = ["w" if self.w_input == "w" else "ws"]
        if self.noise_mode == "input":
            names += [f"noise{i}" for i in range(len(self.noise_resolutions))]
        return names

    def input_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        shapes = [(batch, self.w_dim) if self.w_input == "w" else (batch, self.num_ws, self.w_dim)]
        if self.noise_mode == "input":
            shapes += [(batch, 1, r, r) for r in self.noise_resolutions]
        return shapes

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return tuple(torch.randn(s, generator=g) for s in self.input_shapes(batch))

    def num_params_bytes(self) -> int:
        """fp32 bytes of everything the graph stores (weights, biases, baked noise, constants)."""
        return sum(b.numel() * 4 for b in self.buffers())

    # ------------------------------------------------------------------ forward
    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """Every style of the network, ``[B, style_dim]``, from w ``[B, w_dim]`` or ws ``[B, num_ws, w_dim]``."""
        if self._style_groups is None:
            return torch.addmm(self.style_bias, w, self.style_weight)
        parts = [
            torch.addmm(getattr(self, f"style_bias{j}"), w[:, idx], getattr(self, f"style_weight{j}"))
            for j, idx in enumerate(self._style_groups)
        ]
        return torch.cat(parts, dim=1)

    def _noise_bias(self, x: torch.Tensor, name: str, noise: torch.Tensor | None) -> torch.Tensor:
        # The bias first: it stays next to its convolution (a converter fuses it into the conv).
        x = x + getattr(self, f"{name}_b")
        if self.noise_mode == "const":
            x = x + self._const_noise(name)
        elif self.noise_mode == "input":
            x = x + noise * getattr(self, f"{name}_strength")
        return F.leaky_relu(x, 0.2)

    def _const_noise(self, name: str) -> torch.Tensor:
        """The baked noise map ``[1, 1, r, r]`` of layer ``name``, through the ``noise_barrier`` when there is one."""
        m = getattr(self, f"{name}_noise")
        return m if self.noise_barrier is None else self.noise_barrier(m)

    @staticmethod
    def _band_scale(style: Callable[[tuple[int, int]], torch.Tensor], blk: dict) -> torch.Tensor:
        """``[B, 4C]``, band-interleaved: the upsampling style of each band times conv1's modulation of its channel
        (the same for the 4 bands). A broadcast multiply, not ``repeat_interleave``: its expand is an op XNNPACK does
        not take, which would split an ExecuTorch program into two delegates."""
        up, mod1, c = style(blk["up"]), style(blk["mod1"]), blk["channels"]
        return (up.reshape(-1, c, 4) * mod1[:, :, None]).reshape(-1, 4 * c)

    def _idwt(self, x: torch.Tensor, scale: torch.Tensor, channels: int) -> torch.Tensor:
        """Band-interleaved ``[B, 4C, h, w]`` times a per-sample scale -> ``[B, C, 2h, 2w]``."""
        x = x * scale[:, :, None, None]
        if self.idwt_mode == "conv":
            x = F.conv2d(x, getattr(self, f"haar_conv{channels}"), groups=channels)
        else:
            b, _, h, w = x.shape
            x = torch.matmul(self.haar, x.reshape(b, channels, 4, h * w)).reshape(b, 4 * channels, h, w)
        return F.pixel_shuffle(x, 2)

    def forward(self, w: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        """Render: ``w`` (or ``ws``) plus, with ``noise="input"``, one map per layer -> ``[B, 3, R, R]``."""
        want = len(self.noise_resolutions) if self.noise_mode == "input" else 0
        if len(noise) != want:
            raise ValueError(f"LeanSynthesis(noise={self.noise_mode!r}) takes {want} noise inputs, got {len(noise)}")
        maps = list(noise) if noise else [None] * len(self.noise_resolutions)
        s = self.styles(w)

        def style(span: tuple[int, int]) -> torch.Tensor:
            return s[:, span[0] : span[1]]

        x = self.const * style(self._stage0["style"])[:, :, None, None]
        x = F.conv2d(x, self.s0_w, padding=self.s0_w.shape[-1] // 2)
        x = self._noise_bias(x, "s0", maps[0])
        if self.modulation == "weights":
            return self._blocks_modulated_weights(x, style, maps)
        for i, blk in enumerate(self._blocks):
            c = blk["channels"]
            x = self._idwt(x, self._band_scale(style, blk), c)
            dw = getattr(self, f"b{i}c1_dw")
            x = F.conv2d(x, dw, padding=dw.shape[-1] // 2, groups=c)
            x = self._noise_bias(F.conv2d(x, getattr(self, f"b{i}c1_pw")), f"b{i}c1", maps[1 + 2 * i])
            dw = getattr(self, f"b{i}c2_dw")
            x = x * style(blk["mod2"])[:, :, None, None]
            x = F.conv2d(x, dw, padding=dw.shape[-1] // 2, groups=dw.shape[0])
            x = self._noise_bias(F.conv2d(x, getattr(self, f"b{i}c2_pw")), f"b{i}c2", maps[2 + 2 * i])
        x = x * style(self._head["style"])[:, :, None, None]
        return F.pixel_shuffle(F.conv2d(x, self.head_weight) + self.head_bias, 2)

    def _blocks_modulated_weights(
        self, x: torch.Tensor, style: Callable[[tuple[int, int]], torch.Tensor], maps: list
    ) -> torch.Tensor:
        """The blocks and the head with every style folded into per-sample weights (batch -> groups)."""
        n = x.shape[0]

        def per_sample_conv(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
            """``weight`` [N, O, I/groups, k, k] applied to sample i of x: one grouped conv over the batch."""
            _, c, h, w = x.shape
            o = weight.shape[1]
            out = F.conv2d(x.reshape(1, n * c, h, w), weight.reshape(n * o, *weight.shape[2:]), groups=n * groups)
            return out.reshape(n, o, h, w)

        for i, blk in enumerate(self._blocks):
            c = blk["channels"]
            scale = self._band_scale(style, blk)
            mix = getattr(self, f"haar_conv{c}").reshape(1, c, 4, 4) * scale.reshape(n, c, 1, 4)
            x = F.pixel_shuffle(per_sample_conv(x, mix.reshape(n, 4 * c, 4, 1, 1), c), 2)
            dw = getattr(self, f"b{i}c1_dw")
            x = F.conv2d(x, dw, padding=dw.shape[-1] // 2, groups=c)
            x = self._noise_bias(F.conv2d(x, getattr(self, f"b{i}c1_pw")), f"b{i}c1", maps[1 + 2 * i])
            dw, pw = getattr(self, f"b{i}c2_dw"), getattr(self, f"b{i}c2_pw")
            x = F.conv2d(x, dw, padding=dw.shape[-1] // 2, groups=dw.shape[0])
            # The modulation commutes with the depthwise conv, so it scales the pointwise conv's inputs.
            x = per_sample_conv(x, pw[None] * style(blk["mod2"])[:, None, :, None, None], 1)
            x = self._noise_bias(x, f"b{i}c2", maps[2 + 2 * i])
        head = self.head_weight[None] * style(self._head["style"])[:, None, :, None, None]
        return F.pixel_shuffle(per_sample_conv(x, head, 1) + self.head_bias, 2)


class LeanMapping(nn.Module):
    """The frozen mapping network with its gains folded: ``z [B, z_dim] -> w [B, w_dim]``.

    Args:
        mapping: The teacher's mapping network (not modified).
        truncation_psi: Bake ``w_avg + psi * (w - w_avg)`` in (None or 1: no truncation).
    """

    def __init__(self, mapping: MappingNetwork, truncation_psi: float | None = None) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_layers = mapping.z_dim, mapping.w_dim, mapping.num_layers
        self.truncation_psi = None if truncation_psi in (None, 1, 1.0) else float(truncation_psi)
        gain = 1.0  # the previous layer's activation gain, folded into this layer's weight
        with torch.no_grad():
            for i in range(mapping.num_layers):
                fc = getattr(mapping, f"fc{i}")
                if fc.activation != "lrelu":
                    raise ValueError(f"LeanMapping expects lrelu FC layers, fc{i} uses {fc.activation!r}")
                self.register_buffer(f"w{i}", (fc.weight * fc.weight_gain * gain).t().contiguous().float())
                self.register_buffer(f"b{i}", (fc.bias * fc.bias_gain).float())
                gain = math.sqrt(2.0)
            w_avg = mapping.w_avg.detach().float()
            psi = 1.0 if self.truncation_psi is None else self.truncation_psi
            # w = gain * a, truncated: (1 - psi) * w_avg + psi * gain * a  ->  one Mul, one Add.
            self.register_buffer("out_scale", torch.tensor(psi * gain))
            self.register_buffer("out_shift", (1 - psi) * w_avg)
            self.register_buffer("w_avg", w_avg.clone())

    @property
    def input_names(self) -> list[str]:
        return ["z"]

    def input_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        return [(batch, self.z_dim)]

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, self.z_dim, generator=torch.Generator().manual_seed(seed)),)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(self.num_layers):
            x = F.leaky_relu(torch.addmm(getattr(self, f"b{i}"), x, getattr(self, f"w{i}")), 0.2)
        if self.truncation_psi is None:
            return x * self.out_scale
        return x * self.out_scale + self.out_shift


class LeanGenerator(nn.Module):
    """End to end: ``z -> LeanMapping -> LeanSynthesis(w_input="w")``, noise const or none."""

    def __init__(self, mapping: LeanMapping, synthesis: LeanSynthesis) -> None:
        super().__init__()
        if synthesis.w_input != "w" or synthesis.noise_mode == "input":
            raise ValueError("LeanGenerator needs a LeanSynthesis with w_input='w' and noise 'const' or 'none'")
        if mapping.w_dim != synthesis.w_dim:
            raise ValueError(f"mapping w_dim {mapping.w_dim} != synthesis w_dim {synthesis.w_dim}")
        self.mapping, self.synthesis = mapping, synthesis
        self.z_dim, self.img_resolution = mapping.z_dim, synthesis.img_resolution

    @property
    def input_names(self) -> list[str]:
        return ["z"]

    def input_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        return self.mapping.input_shapes(batch)

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return self.mapping.example_inputs(batch, seed)

    def num_params_bytes(self) -> int:
        return sum(b.numel() * 4 for b in self.buffers())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))
