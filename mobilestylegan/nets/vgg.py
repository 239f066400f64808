"""VGG16 feature extractor (relu1_2, relu2_2, relu3_3, relu4_3) for the perceptual loss, in plain torch.

The layers mirror the first 23 modules of torchvision's ``vgg16().features`` so that torchvision's
ImageNet file ``vgg16-397923af.pth`` loads key for key (``features.{i}.weight|bias``, conv layers at
i = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21). torchvision itself is not needed (and not installable on the
CPU machines here). The perceptual loss never runs conv5 or the classifier, so :func:`load_vgg16` skips
their tensors. Evaluation (LPIPS-style distances, precision/recall) uses :class:`VGG16Full`
(:func:`load_vgg16_full`): all of ``features`` (relu1_2 .. relu5_3) and the classifier up to fc2
(``classifier.0``, ``classifier.3``; the 1000-way ``classifier.6`` is skipped).

Weights are never downloaded: get the file once with
``curl -L -o ~/.cache/mobilestylegan/weights/vgg16-397923af.pth https://download.pytorch.org/models/vgg16-397923af.pth``
and point ``loss.vgg_weights`` (or ``$MOBILESTYLEGAN_VGG16``) at it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mobilestylegan.nets.weights import default_weights_path, locate, read_published_weights
from teacher.formats.common import check_state_dict

__all__ = [
    "FEATURE_CHANNELS",
    "FEATURE_LAYERS",
    "FEATURE_NAMES",
    "FULL_FEATURE_CHANNELS",
    "FULL_FEATURE_LAYERS",
    "VGG16Features",
    "VGG16Full",
    "VGG16_CONFIG_KEY",
    "VGG16_ENV",
    "VGG16_SHA256_PREFIX",
    "VGG16_URL",
    "VGGWeightsNotFoundError",
    "default_vgg16_path",
    "load_vgg16",
    "load_vgg16_full",
]

VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILENAME}"
# torchvision's convention: the file name carries the first 8 hex digits of the file's sha256 and
# torch.hub checks that prefix after downloading. We check the same prefix on every load.
VGG16_SHA256_PREFIX = "397923af"
VGG16_ENV = "MOBILESTYLEGAN_VGG16"
VGG16_CONFIG_KEY = "loss.vgg_weights"


def _conv_stack(layout: tuple[int | str, ...]) -> nn.Sequential:
    """torchvision's VGG ``features``: 3x3 conv + ReLU per channel count, a 2x2 max-pool per ``"M"``."""
    layers: list[nn.Module] = []
    c_in = 3
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(item), kernel_size=3, padding=1), nn.ReLU()]
            c_in = int(item)
    return nn.Sequential(*layers)


# torchvision's vgg16 "D" configuration up to relu4_3: channels per conv, "M" = 2x2 max pool.
_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
# Indices in ``features`` of the ReLUs whose outputs we return (relu1_2, relu2_2, relu3_3, relu4_3).
FEATURE_LAYERS = (3, 8, 15, 22)
FEATURE_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
FEATURE_CHANNELS = (64, 128, 256, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsNotFoundError(FileNotFoundError):
    """The VGG16 ImageNet weights file is not where the configuration says."""


class VGG16Features(nn.Module):
    """Images ``[N, 3, H, W]`` in [-1, 1] -> (relu1_2, relu2_2, relu3_3, relu4_3) feature maps.

    Output shapes: ``[N, 64, H, W]``, ``[N, 128, H/2, W/2]``, ``[N, 256, H/4, W/4]``, ``[N, 512, H/8, W/8]``.
    The input is mapped to [0, 1] and normalised with the ImageNet mean / std (what torchvision's
    weights expect) inside ``forward``. Build it with :func:`load_vgg16`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _conv_stack(_LAYOUT)  # indices 0..22, as torchvision's
        assert len(self.features) == FEATURE_LAYERS[-1] + 1
        # Not persistent: the state dict holds exactly torchvision's keys.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.random_weights = False

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"VGG16Features expects images [N, 3, H, W], got {tuple(img.shape)}")
        x = ((img + 1) * 0.5 - self.mean) / self.std  # [-1, 1] -> [0, 1] -> ImageNet-normalised
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in FEATURE_LAYERS:
                outs.append(x)
        return tuple(outs)  # type: ignore[return-value]


def default_vgg16_path() -> Path:
    """Where the VGG16 weights are looked for: :func:`~mobilestylegan.nets.weights.default_weights_path` of
    ``$MOBILESTYLEGAN_VGG16`` and
    ``vgg16-397923af.pth``."""
    return default_weights_path(VGG16_ENV, VGG16_FILENAME)


def _how_to_get(path: Path) -> str:
    return (
        f"download torchvision's ImageNet VGG16 from {VGG16_URL} (sha256 starts with {VGG16_SHA256_PREFIX}) "
        f"to {path}, or set {VGG16_CONFIG_KEY}=/path/to/{VGG16_FILENAME} (or ${VGG16_ENV})"
    )


def _random_init(model: VGG16Features, seed: int = 0) -> None:
    """He-normal weights (fan-in, so activations keep their scale layer to layer) and small biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)


def load_vgg16(path: str | os.PathLike | None, allow_random_weights: bool = False) -> VGG16Features:
    """Build :class:`VGG16Features` in eval mode with gradients off (gradients still flow to its input).

    Args:
        path: torchvision's ``vgg16-397923af.pth`` (a plain state dict with ``features.*`` and
            ``classifier.*``). Only ``features.0`` .. ``features.21`` are used; conv5 (``features.24/26/28``)
            and ``classifier.*`` are ignored on purpose. The file's sha256 must start with ``397923af``
            (torchvision's check), then every kept key and shape must match. None: the default location
            :func:`default_vgg16_path`.
        allow_random_weights: With ``path=None`` and no file at the default location, return seeded random
            weights (tests only: perceptual numbers are then meaningless) and set ``.random_weights = True``
            (:func:`~mobilestylegan.nets.weights.locate`). A given ``path`` is always loaded, and one that does
            not exist is an error (no silent fallback to random weights).

    Raises:
        VGGWeightsNotFoundError: The file (given, or the default for ``path=None``) does not exist; the
            message names the path, the download URL, the hash prefix and the config key.
        CheckpointError: Wrong hash, or missing / mis-shaped / unexpected ``features`` keys.
    """
    model = VGG16Features()
    path = locate(path, default_vgg16_path(), allow_random_weights)
    if path is None:
        _random_init(model)
        model.random_weights = True
        return model.eval().requires_grad_(False)
    state, _ = _read_torchvision_file(path)
    # Keep features.0 .. features.22 (relu4_3 and before); conv5 and the classifier are not used.
    kept = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > FEATURE_LAYERS[-1]:
            continue
        if parts[0] == "classifier":
            continue
        kept[key] = value
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_state_dict(f"VGG16 features in {path}", kept, expected)
    model.load_state_dict(kept, strict=True)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------ full network (evaluation)

# features 0..30: the layout above, then pool4, conv5_1..conv5_3 and pool5.
_FULL_LAYOUT: tuple[int | str, ...] = _LAYOUT + ("M", 512, 512, 512, "M")
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the five layers LPIPS reads.
FULL_FEATURE_LAYERS = (3, 8, 15, 22, 29)
FULL_FEATURE_CHANNELS = (64, 128, 256, 512, 512)


def _read_torchvision_file(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Existence, sha256 prefix and type checks of ``vgg16-397923af.pth``; returns (state, sha256)."""
    if not path.is_file():
        raise VGGWeightsNotFoundError(f"VGG16 weights not found at {path}: {_how_to_get(path)}")
    return read_published_weights(path, f"torchvision's {VGG16_FILENAME}", VGG16_SHA256_PREFIX, VGG16_URL)


class VGG16Full(nn.Module):
    """torchvision's VGG16 ``features`` (0..30), 7x7 average pool and the classifier up to fc2.

    Images ``[N, 3, H, W]`` in [-1, 1] (normalised inside, as :class:`VGG16Features`):

    - :meth:`relu_features` -> relu1_2 .. relu5_3 maps (64, 128, 256, 512, 512 channels at 1, 1/2,
      1/4, 1/8, 1/16 of the input size);
    - :meth:`fc2` -> ``[N, 4096]`` fc2 activations after ReLU (the precision/recall embedding, at
      224 x 224 input by convention); needs ``classifier=True``.

    Args:
        classifier: Build ``classifier.0`` / ``classifier.3`` (fc1, fc2: 120M parameters). Without it
            the state dict holds only ``features.*``.
    """

    def __init__(self, classifier: bool = True) -> None:
        super().__init__()
        self.features = _conv_stack(_FULL_LAYOUT)  # indices 0..30, as torchvision's
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        # Dropouts keep torchvision's indices (fc1 = classifier.0, fc2 = classifier.3); identity in eval.
        self.classifier = (
            nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU())
            if classifier
            else None
        )
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.random_weights = False

    def _normalise(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"VGG16Full expects images [N, 3, H, W], got {tuple(img.shape)}")
        return ((img + 1) * 0.5 - self.mean) / self.std

    def relu_features(self, img: torch.Tensor) -> list[torch.Tensor]:
        x, outs = self._normalise(img), []
        for i, layer in enumerate(self.features[: FULL_FEATURE_LAYERS[-1] + 1]):
            x = layer(x)
            if i in FULL_FEATURE_LAYERS:
                outs.append(x)
        return outs

    def fc2(self, img: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("this VGG16Full was built without its classifier (classifier=False)")
        x = self.avgpool(self.features(self._normalise(img)))  # [N, 512, 7, 7]
        return self.classifier(torch.flatten(x, 1))  # [N, 4096]


def _random_init_full(model: VGG16Full, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=g)
                m.bias.normal_(0.0, 0.01, generator=g)


def load_vgg16_full(
    path: str | os.PathLike | None, allow_random_weights: bool = False, classifier: bool = True, seed: int = 0
) -> tuple[VGG16Full, str]:
    """Build :class:`VGG16Full` in eval mode with gradients off.

    Args:
        path: torchvision's ``vgg16-397923af.pth`` (sha256 prefix ``397923af``). Every ``features.*`` key
            is used, plus ``classifier.0`` and ``classifier.3`` when ``classifier``; ``classifier.6`` is
            skipped. None: :func:`default_vgg16_path`.
        allow_random_weights: With ``path=None`` and no file at the default location, seeded random weights
            (tests only; ``.random_weights`` is set). A given ``path`` that does not exist is always an error.
        classifier: Also build and load fc1 / fc2.
        seed: Seed of the random weights.

    Returns:
        ``(model, weights_id)``: the file's sha256, or ``"random-seed{seed}"``.

    Raises:
        VGGWeightsNotFoundError: No file; the message names the path, URL and checksum prefix.
        CheckpointError: Wrong checksum, or missing / mis-shaped keys.
    """
    model = VGG16Full(classifier=classifier)
    path = locate(path, default_vgg16_path(), allow_random_weights)
    if path is None:
        _random_init_full(model, seed)
        model.random_weights = True
        return model.eval().requires_grad_(False), f"random-seed{seed}"
    state, digest = _read_torchvision_file(path)
    keep = ("features.", "classifier.0.", "classifier.3.") if classifier else ("features.",)
    kept = {k: v for k, v in state.items() if k.startswith(keep)}
    check_state_dict(f"VGG16 in {path}", kept, {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(kept, strict=True)
    return model.eval().requires_grad_(False), digest
