"""The ``encoder`` graph of an export: an aligned face in, the W+ latent the exported synthesis renders it from out.

Which encoder an export carries (:func:`export_encoder`): the one asked for (a file, a shipped name or a
:class:`~mobilestylegan.nets.encoder.LatentEncoder`), else the one shipped for the student (matched by hash) when the
export's synthesis takes W+; ``False`` carries none. The encoder is checked against the student before any work.

The graph (:class:`LeanEncoder`) takes ``img [B, 3, S, S]`` (S the encoder's input size) and returns
``ws [B, num_ws, w_dim]``. It is the encoder with its whitening folded in: the base head maps straight to W
(``colour`` and ``w_mean`` folded into its weights, in float64), and the per-entry offsets, which move the ``r``
leading principal directions only, are multiplied by those ``r`` rows of ``colour``. Resizing is not in the graph:
:data:`PREPROCESS` says what a runtime does to a photo first (``export.runtime`` and the web page do exactly that).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from export.errors import ExportError
from export.source import jsonable
from mobilestylegan.nets.encoder import LatentEncoder, trunk
from teacher.fs import sha256_file

if TYPE_CHECKING:
    from mobilestylegan.student.generator import StudentGenerator

NEEDS_WPLUS = "an encoder writes W+ latents: export it with --w-input wplus (or without --w-input)"
PREPROCESS = (
    "an FFHQ-aligned face (or a centre-cropped square), uint8 RGB -> Lanczos (PIL) to img_resolution -> "
    "x / 127.5 - 1 in float32 -> mean of each (img_resolution / input_size)^2 block -> img [B, 3, S, S]"
)


class LeanEncoder(nn.Module):
    """``img [B, 3, S, S]`` in [-1, 1] -> ``ws [B, num_ws, w_dim]``: :class:`LatentEncoder` with its whitening
    folded into the heads (see the module docstring); float32, no gradients."""

    def __init__(self, encoder: LatentEncoder) -> None:
        super().__init__()
        cfg = encoder.cfg
        self.cfg = cfg
        src = copy.deepcopy(encoder).float().cpu().eval()
        self.stem, self.stages, self.reduce, self.fc = src.stem, src.stages, src.reduce, src.fc
        colour, mean = encoder.colour.detach().double().cpu(), encoder.w_mean.detach().double().cpu()
        wb, bb = encoder.base.weight.detach().double().cpu(), encoder.base.bias.detach().double().cpu()
        self.base = nn.Linear(cfg.hidden, cfg.w_dim)
        with torch.no_grad():
            self.base.weight.copy_((colour.T @ wb).float())
            self.base.bias.copy_((bb @ colour + mean).float())
        self.offsets = src.offsets
        self.register_buffer("basis", colour[: cfg.offset_rank].float().clone())
        self.register_buffer("fill", encoder.fill.clone(), persistent=False)
        self.requires_grad_(False)

    @property
    def input_names(self) -> list[str]:
        return ["img"]

    def input_shapes(self, batch: int = 1) -> list[tuple[int, ...]]:
        s = self.cfg.input_size
        return [(batch, 3, s, s)]

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(self.input_shapes(batch)[0], generator=g) * 2 - 1,)

    def num_params_bytes(self) -> int:
        """fp32 bytes of the weights and constants the graph stores."""
        tensors = [*self.parameters(), *(b for b in self.buffers() if b.is_floating_point())]
        return sum(t.numel() * 4 for t in tensors)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h = trunk(self, img)
        w = self.base(h)[:, None]
        n_live = len(self.cfg.live)
        if self.offsets is not None:
            w = w + self.offsets(h).reshape(-1, n_live, self.cfg.offset_rank) @ self.basis
        else:
            w = w.expand(-1, n_live, -1)
        return w.index_select(1, self.fill)


def export_encoder(spec: Any, G: StudentGenerator, w_input: str) -> tuple[LatentEncoder | None, dict[str, Any]]:
    """The encoder an export of ``G`` carries and its manifest record (``included`` and why, or where it came from).

    ``spec``: None (the encoder shipped for ``G``, when the synthesis takes W+), False (none), a file or shipped
    name, or a :class:`LatentEncoder`.
    """
    from mobilestylegan.edit.encoder import load_encoder, shipped_encoder_for
    from mobilestylegan.errors import UsageError
    from mobilestylegan.io.latent_space import generator_hash

    if spec is False:
        return None, {"included": False, "reason": "left out (--no-encoder)"}
    if spec is None:
        name = shipped_encoder_for(G)
        if name is None:
            return None, {"included": False, "reason": "no encoder ships for this student; give one with --encoder"}
        if w_input != "wplus":
            return None, {
                "included": False,
                "reason": f"the {name} encoder writes W+ latents and this synthesis takes one w: export with "
                "--w-input wplus to include it",
            }
        spec = name
    if w_input != "wplus":
        raise ExportError(NEEDS_WPLUS)
    if isinstance(spec, LatentEncoder):
        encoder = spec
        source: dict[str, Any] = {"spec": "in-memory LatentEncoder"}
        trained_for = getattr(encoder, "generator_hash", None)
        if trained_for is not None and trained_for != generator_hash(G):
            raise ExportError(
                f"the encoder was trained for another generator (hash {trained_for}), not this student "
                f"(hash {generator_hash(G)})"
            )
    else:
        try:
            encoder = load_encoder(spec, G)
        except UsageError as err:
            raise ExportError(str(err)) from None
        source = {"spec": str(spec)}
        if Path(str(spec)).is_file():
            source["sha256"] = sha256_file(spec)
    cfg = encoder.cfg
    if (cfg.num_ws, cfg.w_dim) != (G.num_ws, G.w_dim):
        raise ExportError(
            f"the encoder writes W+ [{cfg.num_ws}, {cfg.w_dim}], the student reads [{G.num_ws}, {G.w_dim}]"
        )
    if cfg.input_size > G.img_resolution:
        raise ExportError(
            f"the encoder takes {cfg.input_size}-px faces, larger than the student's {G.img_resolution}-px images; "
            "an export resizes faces down to the encoder's input only"
        )
    encoder = encoder.float().cpu().eval()
    info = getattr(encoder, "info", {}) or {}
    return encoder, {
        "included": True,
        "graph": "encoder",
        "input_size": cfg.input_size,
        "preprocess": PREPROCESS,
        "output": "ws [B, num_ws, w_dim]: W+ for the synthesis graph (entries the student never reads are copies "
        "of the live entry below)",
        "live": list(cfg.live),
        "config": cfg.to_dict(),
        "generator_hash": generator_hash(G),
        "source": {**source, "info": jsonable(info)},
    }


__all__ = ["NEEDS_WPLUS", "PREPROCESS", "LeanEncoder", "export_encoder"]
