"""Scaffolding shared by the test modules, one module per topic (no test module imports another):

- :mod:`tests.helpers.paths`: ``REPO``, the repository root.
- :mod:`tests.helpers.teachers`: tiny StyleGAN2 configs and checkpoints, ``randomize``, a teacher/student pair on disk.
- :mod:`tests.helpers.students`: tiny students (``export_student``, ``tiny_student``), their images and float64
  references.
- :mod:`tests.helpers.toolchains`: ``require_toolchain``, the one skip-or-fail switch for optional toolchains.
- :mod:`tests.helpers.records`: an export manifest's gate records, recomputed from the files.
- :mod:`tests.helpers.runtime`: the ``python -m export.runtime`` command line against the PyTorch faces.
- :mod:`tests.helpers.config`: Hydra configs composed outside a Hydra app, tiny training runs.
- :mod:`tests.helpers.msg_split`: MobileStyleGAN.pytorch's split teacher files, written from a native state.
- :mod:`tests.helpers.fake_checkpoints`: NVIDIA and TensorFlow StyleGAN2 pickles, written without their code.
- :mod:`tests.helpers.vgg`: fake torchvision VGG16 state dicts.
"""
