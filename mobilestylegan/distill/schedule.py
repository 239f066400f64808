"""Learning-rate schedules of the student: the factor of the peak rate at each iteration.

Built from ``optim.schedule`` (``_target_`` with ``_partial_: true``) and completed with the run's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Constant:
    """Linear warm-up over ``warmup_steps`` iterations, then the peak rate.

    Args:
        total_steps: Iterations of the run (unused here; every schedule takes it).
        warmup_steps: Iterations of linear warm-up (0: none).
    """

    total_steps: int
    warmup_steps: int = 0

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup_steps:
            return (iteration + 1) / self.warmup_steps
        return 1.0


@dataclass(frozen=True)
class Cosine:
    """Linear warm-up, then a cosine decay to ``min_lr_ratio`` of the peak at the last iteration.

    Args:
        total_steps: Iterations of the run.
        warmup_steps: Iterations of linear warm-up (0: none).
        min_lr_ratio: Final rate relative to the peak.
    """

    total_steps: int
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup_steps:
            return (iteration + 1) / self.warmup_steps
        t = min(1.0, (iteration - self.warmup_steps) / max(1, max(self.total_steps, 1) - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
