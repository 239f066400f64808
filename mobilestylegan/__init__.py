"""MobileStyleGAN: the student network, distillation, metrics and CLIs (built on ``teacher``)."""

__version__ = "0.1.0"
