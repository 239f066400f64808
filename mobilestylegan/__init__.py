"""MobileStyleGAN: the student network, distillation, metrics and CLIs (built on ``teacher``)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``import mobilestylegan`` stays cheap (no torch / OpenVINO until a loader is used).
    if name == "load_pretrained":
        from mobilestylegan.io.pretrained import load_pretrained

        return load_pretrained
    if name == "load_encoder":
        from mobilestylegan.edit.encoder import load_encoder

        return load_encoder
    raise AttributeError(f"module 'mobilestylegan' has no attribute {name!r}")
