"""The published MobileStyleGAN FFHQ-1024 student, imported from its OpenVINO IR into our network.

The PyPI package ``random-face==2021.7.21.1`` (Apache-2.0) ships the authors' student as
``random_face/data/SynthesisNetwork.{xml,bin}`` (input one w ``[1, 512]``, output ``[1, 3, 1024, 1024]``)
next to the StyleGAN2 FFHQ mapping network ``MappingNetwork.{xml,bin}``. :mod:`mobilestylegan.io.ir_graph`
reads the synthesis graph op by op into a fused student (demodulation folded into the weights, each noise
strength folded into its noise map, so ``noise_mode="const"`` reproduces the IR and ``noise_mode="random"``
draws fresh N(0, 1) maps at the trained strength). The auxiliary heads, ``style_inv`` and ``w_avg`` are not in
the files (``w_avg`` is estimated by ``teacher.formats.openvino_ir.read_mapping_ir``).
:func:`load_pretrained` converts once and caches a native checkpoint.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mobilestylegan.io.checkpoint import load_student, save_student
from mobilestylegan.io.ir_graph import read_synthesis, split_noise
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import MobileSynthesisNetwork, StudentConfig
from mobilestylegan.student.unfuse import unfuse_state
from teacher.formats import openvino_ir
from teacher.formats.common import CheckpointError, check_state_dict
from teacher.fs import cache_root, sha256_file
from teacher.mapping import MappingNetwork

log = logging.getLogger(__name__)

IMPORTER_VERSION = 2  # bump when the conversion changes: cached checkpoints are then re-imported
INSTALL_HINT = openvino_ir.INSTALL_HINT  # "pip install --no-deps random-face==2021.7.21.1"


@dataclass(frozen=True)
class PretrainedSpec:
    """A published student we know how to import.

    Args:
        description: One line for ``--list`` and error messages.
        requirement: The pip requirement that ships the files.
        install_hint: The command that installs them.
        config: Our architecture for it (the IR has no auxiliary heads).
    """

    description: str
    requirement: str
    install_hint: str
    config: StudentConfig = field(default_factory=lambda: StudentConfig(aux_heads=False))


PRETRAINED: dict[str, PretrainedSpec] = {
    "ffhq-1024": PretrainedSpec(
        description="MobileStyleGAN FFHQ 1024x1024 (bes-dev, published as OpenVINO IR in random-face), "
        "with the StyleGAN2 FFHQ mapping network",
        requirement="random-face==2021.7.21.1",
        install_hint=INSTALL_HINT,
    ),
}


def import_published_ir(
    xml_path: str | os.PathLike, mapping_xml_path: str | os.PathLike, unfused: bool = False
) -> StudentGenerator:
    """Convert the published MobileStyleGAN student (OpenVINO IR) and its mapping network.

    Args:
        xml_path: ``SynthesisNetwork.xml`` (the ``.bin`` next to it is read too).
        mapping_xml_path: ``MappingNetwork.xml`` (converted by ``teacher.formats.openvino_ir``).
        unfused: Return an unfused student whose demodulation is computed at run time (for further
            training): the folded weights are kept and ``style_inv`` is fitted by non-negative least
            squares so the recomputed demodulation is 1 (max deviation recorded in ``info``). Needs
            scipy. The original ``style_inv`` is not recoverable (only its square up to a
            non-unique solution) and the auxiliary heads are absent either way.

    Returns:
        A :class:`StudentGenerator` (eval mode, gradients off) with ``info`` describing provenance;
        fused unless ``unfused``. ``G(z, noise_mode="const")`` (no truncation) reproduces the IR fed
        with ``G.mapping(z)[:, 0]``; ``noise_mode="random"`` draws fresh noise at the trained strengths.

    Raises:
        CheckpointError: A file is missing or the graph is not the published student's.
    """
    xml_path, mapping_xml_path = Path(xml_path), Path(mapping_xml_path)
    what = f"published student IR {xml_path}"
    cfg = PRETRAINED["ffhq-1024"].config
    # The synthesis graph first (fails fast on a wrong file); our layers give the expected shapes and scales.
    state = split_noise(read_synthesis(xml_path, MobileSynthesisNetwork(cfg), what))
    mapping_state, mapping_info = openvino_ir.read_mapping_ir(mapping_xml_path)
    mapping = MappingNetwork(
        mapping_info["z_dim"], mapping_info["w_dim"], mapping_info["num_layers"], mapping_info["lr_mul"]
    )
    mapping.load_state_dict(mapping_state, strict=True)
    G = StudentGenerator(cfg, mapping)
    info: dict[str, Any] = {}
    if unfused:
        info["demod_fit_max_abs_d_minus_1"] = unfuse_state(state, G.synthesis, what)
    else:
        for conv in G.synthesis.styled_convs():  # the IR is fused: no style_inv, demodulation in the weights
            conv.conv.fuse()
    expected = {k: tuple(v.shape) for k, v in G.synthesis.state_dict().items()}
    check_state_dict(what, state, expected)
    G.synthesis.load_state_dict(state, strict=True)
    if not unfused:
        G.synthesis.fuse()  # the rest of the inference form (the final inverse transform into the head)

    info.update(
        {
            "source": "MobileStyleGAN FFHQ-1024 student, OpenVINO IR from random-face==2021.7.21.1 (Apache-2.0)",
            "source_files": {
                p.name: {"path": str(p), "sha256": sha256_file(p)}
                for p in _ir_pair(xml_path) + _ir_pair(mapping_xml_path)
            },
            "importer_version": IMPORTER_VERSION,
            "fused": not unfused,
            "noise": "IR noise maps have the strength folded in: noise.weight = std(map), noise_const = map / std",
            "w_avg_source": mapping_info["w_avg_source"],
            "missing_from_source": "auxiliary heads, style_inv, w_avg",
        }
    )
    G.info = info
    return G.eval().requires_grad_(False)


def load_pretrained(
    name: str = "ffhq-1024", device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None
) -> StudentGenerator:
    """A published student, ready to sample: eval mode, gradients off, fused.

    The first call converts the installed random-face IR files and caches a native checkpoint at
    ``<cache>/pretrained/<name>.pt`` (``<cache>`` = ``cache_dir``, else ``$MOBILESTYLEGAN_CACHE``,
    else ``~/.cache/mobilestylegan``); later calls read it. The cache is keyed by the sha256 of the
    four IR files and the importer version: if they change, or the cached file is unreadable, it is
    re-imported (and overwritten atomically). Nothing is downloaded.

    Args:
        name: One of :data:`PRETRAINED` (``"ffhq-1024"``).
        device: Where to put the generator.
        cache_dir: Cache root (see above).

    Raises:
        CheckpointError: Unknown name, random-face not installed (the message has the install
            command), or the files are not the published student.
    """
    spec = _spec(name)
    try:
        files = openvino_ir.random_face_files()
    except CheckpointError as err:
        raise CheckpointError(
            f"the pretrained student {name!r} is read from the random-face package, which was not "
            f"found; install it (without its dependencies) with: {spec.install_hint}  ({err})"
        ) from err
    digests = {p.name: sha256_file(p) for p in files.values()}
    path = cache_path(name, cache_dir)
    G = _read_cache(path, name, digests)
    if G is None:
        G = import_published_ir(files["synthesis_xml"], files["mapping_xml"])
        G.info["pretrained_name"] = name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_student(path, G, G.info)
    return G.eval().requires_grad_(False).to(device)


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/pretrained/<name>.pt`` (see :func:`load_pretrained`)."""
    _spec(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "pretrained" / f"{name}.pt"


def _spec(name: str) -> PretrainedSpec:
    if name not in PRETRAINED:
        raise CheckpointError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def _read_cache(path: Path, name: str, digests: dict[str, str]) -> StudentGenerator | None:
    """The cached generator if it is readable and made from these files by this importer, else None."""
    if not path.is_file():
        return None
    try:
        G = load_student(path)
    except CheckpointError as err:
        log.warning("re-importing %s: the cached checkpoint %s is unreadable (%s)", name, path, err)
        return None
    info = G.info
    cached = {k: v.get("sha256") for k, v in (info.get("source_files") or {}).items() if isinstance(v, dict)}
    if (
        info.get("pretrained_name") != name
        or info.get("importer_version") != IMPORTER_VERSION
        or cached != digests
        or not G.synthesis.fused
    ):
        log.info("re-importing %s: the cached checkpoint %s was made from other files or another importer", name, path)
        return None
    return G


def _ir_pair(xml_path: Path) -> list[Path]:
    return [xml_path, xml_path.with_suffix(".bin")]
