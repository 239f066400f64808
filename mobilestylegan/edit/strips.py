"""Edited latents as strips: one image per strength, and, when a second generator renders the same edit, how close
the two rows are (PSNR and FaceNet's identity distance per strength, compared at the smaller resolution)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mobilestylegan.edit.directions import Direction, apply
from mobilestylegan.errors import UsageError
from mobilestylegan.io.images import to_uint8
from mobilestylegan.nets.resize import area_downsample, compare_at_smaller_resolution


@torch.no_grad()
def render(G: torch.nn.Module, ws: torch.Tensor) -> torch.Tensor:
    """The images of W+ latents ``[N, num_ws, w_dim]``, one at a time, with the generator's constant noise."""
    return torch.cat([G.synthesis(ws[i : i + 1], noise_mode="const", inference=True) for i in range(len(ws))])


def edited_images(
    G: torch.nn.Module, ws: torch.Tensor, d: Direction, strengths: list[float], indices: list[int]
) -> torch.Tensor:
    """One latent ``[1, num_ws, w_dim]`` moved along ``d`` by each strength on the W+ entries ``indices``, rendered:
    ``[len(strengths), 3, R, R]``."""
    return render(G, torch.cat([apply(ws, d, s, indices) for s in strengths]))


def compare_edits(
    images: torch.Tensor, others: torch.Tensor, strengths: list[float]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One generator's edited images against another's of the same edits: both rows at the smaller resolution, one
    under the other, and per strength the PSNR (``psnr_db_student_vs_compare``; ``unedited_psnr_db`` at strength 0,
    None without one) and the identity distance (``identity_student_vs_compare``, see :func:`identities`)."""
    a, b, psnr = compare_at_smaller_resolution(images, others)
    entry: dict[str, Any] = {"psnr_db_student_vs_compare": [round(float(x), 3) for x in psnr]}
    zero = int(np.argmin(np.abs(np.asarray(strengths))))
    entry["unedited_psnr_db"] = entry["psnr_db_student_vs_compare"][zero] if strengths[zero] == 0 else None
    entry["identity_student_vs_compare"] = identities(a, b)
    return torch.cat([a, b]), entry


def identities(images: torch.Tensor, references: torch.Tensor) -> list[float | None] | None:
    """Per image, FaceNet's distance of ``images[i]`` to ``references[i]`` (None where no face is found); None when
    FaceNet or the face models are not installed."""
    from mobilestylegan.edit import faces

    if faces.identity_model_path() is None or not faces.landmark_package_installed():
        return None
    out: list[float | None] = []
    for a, b in zip(to_uint8(images.clamp(-1, 1)), to_uint8(references.clamp(-1, 1))):
        try:
            out.append(round(faces.identity_between(b, a), 4))
        except UsageError:
            out.append(None)
    return out


def strip_row(row: torch.Tensor, target: torch.Tensor | None = None, size: int | None = None) -> torch.Tensor:
    """A strip's images as a PNG shows them: ``target`` first when given (area-downsampled to the row's size),
    clamped to [-1, 1], then area-downsampled to ``size`` pixels when they are larger."""
    if target is not None:
        row = torch.cat([area_downsample(target, row.shape[-1]), row])
    row = row.clamp(-1, 1)
    return area_downsample(row, size) if size else row


__all__ = ["compare_edits", "edited_images", "identities", "render", "strip_row"]
