"""Lightning training checkpoints as real runs write them, read without importing or executing anything.

Two containers:
- MobileStyleGAN.pytorch's (its ``Distiller`` under pytorch-lightning 1.0.2): ``callbacks`` keyed by the
  ModelCheckpoint *class*, two torch-1.x Adam states, ``state_dict`` with the student, the teacher
  (``mapping_net.*``, ``synthesis_net.*``, ``style_mean``), VGG16, the discriminator, the DWT modules and
  the FID Inception; optionally ``hyper_parameters`` as Lightning / argparse / omegaconf objects.
- this toolkit's own (Lightning 2.x): ``loops``, callbacks keyed by strings, ``distill``; here also with the
  ``hyper_parameters`` and mixed-precision state other Lightning 2.x runs store.

The class references of packages this machine lacks (pytorch-lightning 1.x, an attacker's module) are
pickled under their real module names from fake modules made here and removed before anything is read;
omegaconf's ``DictConfig`` and Lightning 2.x's ``AttributeDict`` are the real ones (both are installed with
this toolkit), so their real pickled state is what the reader meets.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import types
from pathlib import Path

import pytest
import torch

import teacher
from mobilestylegan.io.load import load_any_student
from mobilestylegan.student.generator import StudentGenerator
from mobilestylegan.student.synthesis import StudentConfig
from teacher.formats.common import CheckpointError
from teacher.mapping import MappingNetwork
from teacher.numerics import assert_parity
from tests.helpers.msg_split import tiny_config, tiny_native_state, write_split
from tests.helpers.teachers import randomize

FAKE_NAMES = ("pytorch_lightning", "evilpkg")


@contextlib.contextmanager
def fake_modules():
    """Modules with the real names and classes of what training checkpoints pickle by reference."""
    made: dict[str, types.ModuleType] = {}

    def module(name: str) -> types.ModuleType:
        for i in range(1, name.count(".") + 2):
            part = ".".join(name.split(".")[:i])
            made.setdefault(part, types.ModuleType(part))
        return made[name]

    def cls(mod: str, name: str, bases: tuple = ()) -> type:
        c = type(name, bases or (object,), {"__module__": mod})
        setattr(module(mod), name, c)
        return c

    ns = types.SimpleNamespace()
    ns.ModelCheckpoint = cls("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    ns.AttributeDict = cls("pytorch_lightning.utilities.parsing", "AttributeDict", (dict,))
    run = types.FunctionType((lambda path: open(path, "w").close()).__code__, {"open": open}, "run")
    run.__module__, run.__qualname__ = "evilpkg.payload", "run"
    module("evilpkg.payload").run = ns.run = run
    assert not any(k in sys.modules for k in made)
    sys.modules.update(made)
    try:
        yield ns
    finally:
        for k in made:
            sys.modules.pop(k, None)


def omegaconf_config(content: dict):
    from omegaconf import OmegaConf

    return OmegaConf.create(content)


class Payload:
    """Pickles as a call of evilpkg.payload.run(marker): what a malicious checkpoint does."""

    def __init__(self, fn, marker: Path):
        self.fn, self.marker = fn, marker

    def __reduce__(self):
        return self.fn, (str(self.marker),)


def adam_state(params: int, step: int) -> dict:
    """An Adam state dict in the torch 1.x format (integer step)."""
    g = torch.Generator().manual_seed(params)
    return {
        "state": {
            i: {"step": step, "exp_avg": torch.randn(3, generator=g), "exp_avg_sq": torch.rand(3, generator=g)}
            for i in range(params)
        },
        "param_groups": [
            {
                "lr": 5e-4,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "amsgrad": False,
                "params": list(range(params)),
            }
        ],
    }


def distiller_state_dict(student, tcfg, tstate, split_dir: Path) -> dict[str, torch.Tensor]:
    """The state_dict of MobileStyleGAN.pytorch's Distiller (a9776ff) for these networks."""
    sd = {f"student.{k}": v for k, v in student.synthesis.state_dict().items() if not k.endswith("noise_const")}
    r = 1 / math.sqrt(2)
    taps = {"g0_col": [r, r], "g1_col": [r, -r], "g0_row": [r, r], "g1_row": [r, -r]}
    for prefix in ["student.idwt."] + [f"student.layers.{i}.up.idwt." for i in range(len(student.synthesis.layers))]:
        for name, t in taps.items():
            shape = (1, 1, -1, 1) if name.endswith("col") else (1, 1, 1, -1)
            sd[prefix + name] = torch.tensor(t).reshape(shape)
    sd["student.device_info"] = torch.zeros(1)
    m_file, s_file = write_split(tcfg, tstate, split_dir)
    sd.update({f"mapping_net.{k}": v for k, v in torch.load(m_file, weights_only=True)["ckpt"].items()})
    sd.update({f"synthesis_net.{k}": v for k, v in torch.load(s_file, weights_only=True)["ckpt"].items()})
    sd["style_mean"] = tstate["mapping.w_avg"][None, None].repeat(1, tcfg.num_ws, 1)
    sd["device_info"] = torch.tensor(1)
    g = torch.Generator().manual_seed(5)
    for name, shape in [
        ("loss.perceptual_loss.net.net.0.weight", (4, 3, 3, 3)),
        ("loss.gan_loss.m.convs.0.0.weight", (4, 3, 1, 1)),
        ("loss.dwt.h0_col", (1, 1, 2, 1)),
        ("loss.idwt.g0_col", (1, 1, 2, 1)),
        ("inception.blocks.0.0.conv.weight", (4, 3, 3, 3)),
    ]:
        sd[name] = torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """A student and its 32-px teacher sharing the mapping, as MobileStyleGAN.pytorch holds them."""
    d = tmp_path_factory.mktemp("original")
    tcfg = tiny_config(64)
    tstate = tiny_native_state(tcfg, seed=1)
    tstate["mapping.w_avg"] = torch.randn(tcfg.w_dim, generator=torch.Generator().manual_seed(2))
    mapping = MappingNetwork(tcfg.z_dim, tcfg.w_dim, tcfg.mapping_layers)  # the teacher's, as the Distiller has it
    mapping.load_state_dict({k[len("mapping.") :]: v for k, v in tstate.items() if k.startswith("mapping.")})
    S = StudentGenerator(StudentConfig(img_resolution=32, w_dim=tcfg.w_dim, channels=(16, 16, 8)), mapping)
    randomize(S.synthesis, seed=4)
    sd = distiller_state_dict(S, tcfg, tstate, d)
    return S, tcfg, tstate, sd


def write_102(path: Path, sd: dict, *, callbacks: bool, hyper: bool, payload_in: str | None = None) -> None:
    """The layout pytorch-lightning 1.0.2's ModelCheckpoint writes, pickled with the real class names."""
    with fake_modules() as ns:
        ckpt = {
            "epoch": 7,
            "global_step": 12000,
            "pytorch-lightning_version": "1.0.2",
            "optimizer_states": [adam_state(4, 12000), adam_state(3, 12000)],
            "lr_schedulers": [],
            "state_dict": sd,
        }
        if callbacks:
            ckpt["callbacks"] = {
                ns.ModelCheckpoint: {
                    "monitor": "kid_val",
                    "best_model_score": torch.tensor(0.0123),
                    "best_model_path": "/runs/ffhq/epoch=6.ckpt",
                }
            }
        if hyper:
            cfg = omegaconf_config({"trainset": {"emb_size": 512}, "distillation_loss": {"perceptual_size": 256}})
            ckpt["hparams_name"] = "cfg"
            ckpt["hyper_parameters"] = ns.AttributeDict(cfg=cfg, args=argparse.Namespace(gpus=4, batch_size=2))
        if payload_in is not None:
            evil = Payload(ns.run, path.with_suffix(".executed"))
            if payload_in == "callbacks":
                ckpt.setdefault("callbacks", {})[ns.ModelCheckpoint] = {"monitor": evil}
            else:
                ckpt["hyper_parameters"] = ns.AttributeDict(cfg=evil)
        torch.save(ckpt, path)
    assert not any(name.split(".")[0] in FAKE_NAMES for name in sys.modules)


@pytest.mark.parametrize(
    "callbacks,hyper",
    [(True, False), (False, False), (True, True), (False, True)],
    ids=["callbacks", "bare", "callbacks+hparams", "hparams"],
)
def test_mobilestylegan_lightning_102_checkpoint_loads_student_and_teacher(originals, tmp_path, callbacks, hyper):
    S, tcfg, tstate, sd = originals
    path = tmp_path / "epoch=7.ckpt"
    write_102(path, sd, callbacks=callbacks, hyper=hyper)
    G = load_any_student(path)
    assert not any(name.split(".")[0] in FAKE_NAMES for name in sys.modules)  # nothing was imported
    assert G.cfg == S.cfg and G.info["source_format"] == "mobilestylegan-lightning"
    assert G.info["lightning_version"] == "1.0.2"
    assert {"optimizer_states", "lr_schedulers", "epoch"} <= set(G.info["ignored"])
    assert {"state_dict: synthesis_net.*", "state_dict: loss.*", "state_dict: inception.*"} <= set(G.info["ignored"])
    stubs = set(G.info.get("inert_classes", []))
    assert ("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in stubs) == callbacks
    assert ("omegaconf.dictconfig.DictConfig" in stubs) == hyper
    z = torch.randn(3, S.z_dim, generator=torch.Generator().manual_seed(0))
    noise = S.synthesis.make_noise(3, "random", generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = S.mapping(z)
        torch.testing.assert_close(G.synthesis(ws, noise=noise), S.synthesis(ws, noise=noise), rtol=0, atol=0)
    # The teacher half: mapping_net + synthesis_net, the truncation centre from style_mean.
    T = teacher.load_generator(path)
    ref = teacher.Generator(tcfg)
    ref.load_state_dict(tstate)
    assert T.img_resolution == 64 and torch.equal(T.mapping.w_avg, tstate["mapping.w_avg"])
    zt = torch.randn(2, tcfg.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_parity(
            T(zt, truncation_psi=0.7, noise_mode="none"),
            ref(zt, truncation_psi=0.7, noise_mode="none"),
            "teacher from the Lightning checkpoint",
        )


@pytest.mark.parametrize("where", ["callbacks", "hyper_parameters"])
def test_a_pickled_call_in_a_training_checkpoint_is_refused(originals, tmp_path, where):
    _, _, _, sd = originals
    path = tmp_path / "evil.ckpt"
    write_102(path, sd, callbacks=True, hyper=False, payload_in=where)
    marker = path.with_suffix(".executed")
    with pytest.raises(CheckpointError, match=r"refused to call evilpkg\.payload\.run.*nothing was executed"):
        load_any_student(path)
    with pytest.raises(CheckpointError, match=r"refused to call evilpkg\.payload\.run"):
        teacher.load_generator(path)
    assert not marker.exists()
    # The same call unpickled without the guard does run: the fixture is a real attack, not a dud.
    with fake_modules():
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_compare_cli_reads_student_and_teacher_from_one_checkpoint(originals, tmp_path, capsys):
    from mobilestylegan.cli.generate import main

    _, _, _, sd = originals
    path = tmp_path / "last.ckpt"
    write_102(path, sd, callbacks=True, hyper=True)
    assert main([str(path), "--compare", str(path), "--seeds", "0-1", "--outdir", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "compare.png").is_file() and "PSNR" in capsys.readouterr().out


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A real 4-iteration distillation run of this toolkit (Lightning 2.x checkpoints)."""
    from tests.helpers.config import run_tiny

    out = tmp_path_factory.mktemp("own")
    summary, _ = run_tiny(out, "trainer.steps=4", "trainer.val_every=2", "trainer.checkpoint_every=2")
    return out, summary


def test_own_training_checkpoints_load_everywhere(own_run, tmp_path):
    out, summary = own_run
    student = load_any_student(summary["student"])
    last, best = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"
    z = torch.randn(2, student.z_dim, generator=torch.Generator().manual_seed(0))
    for path in (last, best):
        G = load_any_student(path)
        assert G.info["weights"] == "student_ema" and G.cfg == student.cfg
        assert {"loops", "callbacks", "optimizer_states", "distill"} <= set(G.info["ignored"])
    with torch.no_grad():  # last.ckpt is the end of the run: its EMA student is student.pt
        G = load_any_student(last)
        torch.testing.assert_close(G(z, noise_mode="const"), student(z, noise_mode="const"), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="holds the student.*never the teacher"):
        teacher.load_generator(last)

    # What other Lightning 2.x runs add: hyper-parameters as objects, mixed-precision scaler state.
    from lightning.fabric.utilities.data import AttributeDict

    with fake_modules():
        ck = torch.load(last, weights_only=True)
        ck["hparams_name"] = "kwargs"
        ck["hyper_parameters"] = AttributeDict(cfg=omegaconf_config({"optim": {"lr": 5e-4}}), note="x")
        ck["MixedPrecision"] = {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        }
        rich = tmp_path / "rich.ckpt"
        torch.save(ck, rich)
    G = load_any_student(rich)
    assert "lightning.fabric.utilities.data.AttributeDict" in G.info["inert_classes"]
    assert {"hyper_parameters", "MixedPrecision", "hparams_name"} <= set(G.info["ignored"])

    from export.exporter import export
    from mobilestylegan.cli import evaluate as E
    from mobilestylegan.cli.generate import main as generate

    assert generate([str(rich), "--seeds", "0", "--outdir", str(tmp_path / "g"), "--no-grid"]) == 0
    assert (tmp_path / "g" / "seed0000.png").is_file()
    manifest = export(str(rich), "openvino", tmp_path / "ir", progress=False)  # (a 32-px ONNX is mostly graph)
    assert manifest["source"]["spec"] == str(rich)
    jsonl = tmp_path / "e.jsonl"
    assert (
        E.main(
            [
                "--gen",
                str(rich),
                "--ref",
                str(last),
                "--metrics",
                "fidelity",
                "--num",
                "2",
                "--out",
                str(jsonl),
                "--allow-random-weights",
                "--quiet",
            ]
        )
        == 0
    )
    assert jsonl.read_text().count("\n") >= 2
