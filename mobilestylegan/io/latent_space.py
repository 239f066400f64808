"""What a generator's latent space looks like from outside: its fingerprint, the W+ entries it reads, samples of W.

Shared by projection and editing (``mobilestylegan.edit``) and by encoder training (``mobilestylegan.distill``).
"""

from __future__ import annotations

import hashlib

import torch


def generator_hash(G: torch.nn.Module) -> str:
    """A fingerprint of a generator's weights and buffers (names, shapes, dtypes and bytes): 16 hex digits."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def live_ws(G: torch.nn.Module, probe: bool = False) -> list[int]:
    """The W+ indices the generator's image depends on (the fused published student reads 16 of its 23: the
    rest fed heads that fusing removed, and the image never reads the auxiliary heads). A student's follow from its
    routing (ws[0]: the 4x4 conv; block i: ws[3i+1] and ws[3i+2]; the last block's head: ws[3(n-1)+3]), a StyleGAN2
    teacher reads all; other generators (or ``probe=True``) are probed by differentiating one render."""
    from mobilestylegan.student.synthesis import MobileSynthesisNetwork
    from teacher.synthesis import SynthesisNetwork

    syn = G.synthesis
    if not probe and isinstance(syn, MobileSynthesisNetwork):
        n = len(syn.layers)
        return sorted({0, 3 * (n - 1) + 3} | {3 * i + k for i in range(n) for k in (1, 2)})
    if not probe and isinstance(syn, SynthesisNetwork):
        return list(range(G.num_ws))
    g = torch.Generator().manual_seed(0)
    ws = torch.randn(1, G.num_ws, G.w_dim, generator=g)
    with torch.enable_grad():
        ws.requires_grad_(True)
        img = G.synthesis(ws, noise_mode="const")
        probe = torch.randn(img.shape, generator=g)
        (grad,) = torch.autograd.grad((img * probe).sum(), ws)
    return [i for i in range(G.num_ws) if bool(grad[0, i].abs().max() > 0)]


@torch.no_grad()
def mapped_w(G: torch.nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` latents ``w = mapping(z)`` for z from a seeded generator, ``[n, w_dim]`` float64."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([G.mapping.embed(z[i : i + 2048]) for i in range(0, n, 2048)]).double()


__all__ = ["generator_hash", "live_ws", "mapped_w"]
