"""W+ routing: the layer resolution each W+ entry drives, in StyleGAN2 and in MobileStyleGAN.

The two generators take W+ vectors of different lengths (18 and 23 at 1024 px); an entry of one corresponds to the
entries of the other that drive layers of the same resolution. Style mixing in distillation and layer ranges of
edit directions (given in the teacher's indices) go through these rules.
"""

from __future__ import annotations

import torch
from torch import nn

from mobilestylegan.student.synthesis import MobileSynthesisNetwork
from teacher.synthesis import SynthesisNetwork


def teacher_ws_resolution(i: int) -> int:
    """Layer resolution of StyleGAN2 W+ index ``i``: ``4 * 2**((i + 1) // 2)``.

    Routing (``teacher/synthesis.py``): ws[0] is the 4x4 conv; block j >= 1 (resolution 4 * 2**j)
    uses ws[2j-1] (up-sampling conv0) and ws[2j] (conv1), and ws[2j+1] for its ToRGB, an index
    shared with conv0 of block j+1 and therefore counted at that next resolution (ws[1]: the 4x4
    ToRGB and the 8x8 conv0 -> 8). The last index drives only the final ToRGB; the rule gives it 2R,
    which lies above every crossover, so it mixes like the layers at R (18 ws at 1024: 4, 8, 8, ...,
    1024, 1024, 2048).
    """
    return 4 * 2 ** ((i + 1) // 2)


def student_ws_resolution(i: int) -> int:
    """Layer resolution of MobileStyleGAN W+ index ``i``: 4 for i = 0, else ``8 * 2**((i - 1) // 3)``.

    Routing (``mobilestylegan/student/synthesis.py``): ws[0] is the 4x4 conv; ws[1] the 4x4 head *and*
    block 0's up-sampler/conv1 (counted at 8, like the teacher's shared ws[1]); block i (resolution
    8 * 2**i) uses ws[3i+1] (up-sampler + conv1), ws[3i+2] (conv2) and ws[3i+3] (its head). The last
    index is unused and gets 2 * (the last feature resolution) (23 ws at 1024: 4, 8, 8, 8, 16, ...,
    512, 1024).
    """
    return 4 if i == 0 else 8 * 2 ** ((i - 1) // 3)


def ws_resolutions(synthesis: nn.Module, num_ws: int) -> torch.Tensor:
    """``[num_ws]`` int64 layer resolution of every W+ entry of a StyleGAN2 or MobileStyleGAN synthesis net."""
    if isinstance(synthesis, MobileSynthesisNetwork):
        rule = student_ws_resolution
    elif isinstance(synthesis, SynthesisNetwork):
        rule = teacher_ws_resolution
    else:
        raise ValueError(
            f"unknown synthesis network {type(synthesis).__name__}: the W+ layer resolutions are "
            "defined for teacher.synthesis.SynthesisNetwork and MobileSynthesisNetwork"
        )
    return torch.tensor([rule(i) for i in range(num_ws)], dtype=torch.int64)


def teacher_to_student_ws(teacher_indices: list[int], student_num_ws: int) -> list[int]:
    """The student's W+ entries that drive layers at the resolutions of the given teacher entries."""
    res = {teacher_ws_resolution(i) for i in teacher_indices}
    return [j for j in range(student_num_ws) if student_ws_resolution(j) in res]


def student_to_teacher_ws(student_ws: torch.Tensor, teacher_num_ws: int) -> torch.Tensor:
    """A student's W+ ``[N, num_ws, w_dim]`` as a teacher's: each teacher entry takes the first student entry of its
    resolution (the teacher's top entry, whose rule resolution no student entry has, takes the student's last)."""
    n = student_ws.shape[1]
    pick = []
    for i in range(teacher_num_ws):
        same = [j for j in range(n) if student_ws_resolution(j) == teacher_ws_resolution(i)]
        pick.append(same[0] if same else n - 1)
    return student_ws[:, pick]
