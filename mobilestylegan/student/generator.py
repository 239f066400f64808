"""The student generator: the teacher's frozen mapping network + the MobileStyleGAN synthesis network.

It exposes the teacher's contract (``mapping``, ``synthesis``, ``__call__``, ``z_dim``, ``w_dim``,
``num_ws``, ``img_resolution``), so generation, export and evaluation work on either.
"""

from __future__ import annotations

import torch
from torch import nn

from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from teacher.mapping import MappingNetwork


class StudentGenerator(nn.Module):
    """``G(z) = G.synthesis(G.mapping(z))`` with a frozen mapping.

    Args:
        cfg: Student architecture.
        mapping: The teacher's mapping network (one w per sample, ``num_ws=None``); it is frozen here.
    """

    def __init__(self, cfg: StudentConfig, mapping: MappingNetwork) -> None:
        super().__init__()
        if mapping.w_dim != cfg.w_dim:
            raise ValueError(f"mapping w_dim {mapping.w_dim} does not match the student's w_dim {cfg.w_dim}")
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = mapping.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, 3
        self.mapping = mapping
        self.mapping.num_ws = cfg.num_ws
        self.mapping.requires_grad_(False)
        self.synthesis = MobileSynthesisNetwork(cfg)

    def train(self, mode: bool = True) -> StudentGenerator:
        super().train(mode)
        self.mapping.eval()  # frozen: never in training mode
        return self

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        noise: list[torch.Tensor | None] | None = None,
        inference: bool = False,
    ) -> torch.Tensor:
        """z ``[N, z_dim]`` -> image ``[N, 3, R, R]``; ``inference`` as in :meth:`MobileSynthesisNetwork.forward`."""
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, inference=inference)

    def fuse(self) -> StudentGenerator:
        """Inference form (see :meth:`MobileSynthesisNetwork.fuse`). Returns self."""
        self.synthesis.fuse()
        return self


def teacher_noise_for_student(
    teacher_noise: list[torch.Tensor | None], student: MobileSynthesisNetwork
) -> list[torch.Tensor | None]:
    """Pick the teacher's noise maps the student's layers correspond to.

    The teacher's conv layers run 4 (one), then two per resolution; the student has the same
    sequence up to its last feature resolution. Resolutions are checked.
    """
    want = [s[-1] for s in student.noise_shapes]
    if len(teacher_noise) < len(want):
        raise ValueError(f"the teacher gives {len(teacher_noise)} noise maps, the student needs {len(want)}")
    picked = teacher_noise[: len(want)]
    for i, (n, r) in enumerate(zip(picked, want)):
        if n is not None and n.shape[-1] != r:
            raise ValueError(f"teacher noise map {i} is {n.shape[-1]}px, the student's layer {i} is {r}px")
    return picked
