"""The main job (Hydra config composition + train(cfg)) on the embedded tiny teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from tests.conftest import REPO


def compose_main(overrides: list[str]):
    import train  # registers the structured configs

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return train, compose(config_name="config", overrides=overrides)


def test_main_job_writes_grid_and_summary(tmp_path):
    from PIL import Image

    train, cfg = compose_main(["sample.generator=embedded:tiny64", "sample.seeds=[0,1,2]", "sample.grid_columns=3"])
    summary = train.train(cfg, tmp_path)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and saved["resolution"] == 64 == summary["resolution"]
    grid = np.asarray(Image.open(tmp_path / "samples.png"))
    assert grid.shape == (2 + 66, 2 + 3 * 66, 3)
    assert grid.std() > 10  # real content, not a blank image
    again = train.train(cfg, tmp_path / "again")
    assert again["image_mean"] == summary["image_mean"]  # seeds and const noise make it deterministic


def test_typo_in_config_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_main(["sample.truncaton_psi=0.5"])


def test_default_config_renders_the_published_ffhq_student():
    _, cfg = compose_main([])
    assert cfg.sample.generator == "ffhq-1024"
    from mobilestylegan.pretrained import PRETRAINED

    assert cfg.sample.generator in PRETRAINED


def test_negative_seed_is_a_clear_error(tmp_path):
    train, cfg = compose_main(["sample.generator=embedded:tiny64", "sample.seeds=[-1]"])
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        train.train(cfg, tmp_path)
