"""MobileStyleGAN: the student network, distillation, metrics and CLIs (built on ``teacher``)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``import mobilestylegan`` stays cheap (no torch / OpenVINO until a loader is used).
    if name == "load_pretrained":
        from mobilestylegan.io.pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'mobilestylegan' has no attribute {name!r}")
