"""Where the discriminator starts: the factories ``teacher.discriminator`` names with ``_target_``.

Each is called with the teacher's source and the student, and returns a discriminator at the student's
resolution.
"""

from __future__ import annotations

from pathlib import Path

import teacher
from mobilestylegan.distill.schema import ConfigError
from mobilestylegan.student.generator import StudentGenerator


def fresh(teacher_source: str, student: StudentGenerator) -> teacher.Discriminator:
    """A randomly initialised StyleGAN2 discriminator sized like the student: its channels at resolution r are the
    student's at min(r, R/2)."""
    res = student.img_resolution
    ch = dict(zip(student.cfg.feature_resolutions, student.cfg.channels))
    channels = {r: ch[min(r, res // 2)] for r in [4 * 2**i for i in range(res.bit_length() - 2)]}
    return teacher.Discriminator(teacher.DiscriminatorConfig(img_resolution=res, channels=channels))


def auto(teacher_source: str, student: StudentGenerator) -> teacher.Discriminator:
    """The teacher file's own discriminator when it has one at the student's resolution, else :func:`fresh`."""
    if Path(teacher_source).is_file():
        ck = teacher.read_checkpoint(teacher_source)
        if ck.d_config is not None and ck.d_config.img_resolution == student.img_resolution:
            D = teacher.Discriminator(ck.d_config)
            D.load_state_dict(ck.d_state, strict=True)
            return D
    return fresh(teacher_source, student)


def from_file(teacher_source: str, student: StudentGenerator, path: str) -> teacher.Discriminator:
    """The discriminator stored in ``path`` (any checkpoint format that holds one), trainable."""
    D = teacher.load_discriminator(path)
    if D.img_resolution != student.img_resolution:
        raise ConfigError(
            f"teacher.discriminator.path: {path} judges {D.img_resolution}px images, the student "
            f"renders {student.img_resolution}px"
        )
    return D.train().requires_grad_(True)
