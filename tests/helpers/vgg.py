"""Fake torchvision VGG16 state dicts: the exact keys and shapes, random where the tests look, tiny on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

# torchvision's vgg16: conv layers of `features` (index -> (in, out)) and the classifier shapes.
TV_CONVS = {
    0: (3, 64),
    2: (64, 64),
    5: (64, 128),
    7: (128, 128),
    10: (128, 256),
    12: (256, 256),
    14: (256, 256),
    17: (256, 512),
    19: (512, 512),
    21: (512, 512),
    24: (512, 512),
    26: (512, 512),
    28: (512, 512),
}
TV_CLASSIFIER = {
    "classifier.0.weight": (4096, 25088),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


def tv_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for i, (cin, cout) in TV_CONVS.items():
        shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (cout,)
    return shapes | TV_CLASSIFIER


def fake_state(random_up_to: int = 21, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's exact keys and shapes. Convs up to ``random_up_to`` get random
    values; the rest (conv5, classifier: ~120M values) are zero-stride views, so the file stays tiny."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in tv_shapes().items():
        idx = int(key.split(".")[1])
        if key.startswith("features.") and idx <= random_up_to:
            std = (2.0 / (shape[1] * 9)) ** 0.5 if len(shape) == 4 else 0.1
            state[key] = torch.randn(shape, generator=g) * std
        else:
            state[key] = torch.zeros(()).expand(shape)
    return state


def save_hashed(state: dict[str, torch.Tensor], path: Path) -> str:
    """``torch.save(state, path)``; returns the file's sha256 (hex)."""
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()
