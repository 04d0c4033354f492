"""pipeline.supervised_settings: a model's section over the shared ``supervised`` section."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from snakemake.utils import validate

from pipeline.registry import models
from pipeline.supervised_settings import supervised_settings
from pipeline.train.stage_config import STAGE_CONFIGS, stage_config
from tests.snakemake_helpers import REPO

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def _config(override: str = "") -> dict:
    """config.yaml with an override merged one section deep, then schema-validated."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name, values in (yaml.safe_load(override) or {}).items():
        config[name] = {**config.get(name, {}), **values}
    validate(config, SCHEMA)
    return config


@pytest.mark.parametrize("section", sorted(STAGE_CONFIGS))
def test_each_section_resolves_to_its_dataclass_defaults(section: str) -> None:
    # config.yaml (= the schema's defaults) and the dataclasses say the same per model
    config = _config()
    settings = supervised_settings(config, section)
    assert stage_config(section, settings) == STAGE_CONFIGS[section]()
    assert set(settings) == set(config["supervised"]) | set(config[section])
    assert set(settings) <= {f.name for f in dataclasses.fields(STAGE_CONFIGS[section])}


def test_a_shared_setting_reaches_every_model_unless_its_section_sets_it() -> None:
    config = _config("supervised: {epochs: 3, lr: 0.5}")
    for spec in models().values():
        settings = supervised_settings(config, spec.section)
        assert settings["epochs"] == (100 if spec.section == "finetune_labs" else 3)
        own = config[spec.section].get("lr")  # a section's own rate wins (stage 2, baselines)
        assert settings["lr"] == (0.5 if own is None else own)
    assert supervised_settings(config, "finetune_labs")["lr"] == 0.5  # no rate of its own


def test_a_models_own_key_stays_in_its_section() -> None:
    config = _config("distilled: {mix: 0.25}")
    assert supervised_settings(config, "distilled")["mix"] == 0.25
    assert "mix" not in supervised_settings(config, "baselines")


def test_the_old_head_init_value_warns_and_means_linear_fit() -> None:
    config = _config("baselines: {head_init: probe}")
    with pytest.warns(FutureWarning, match=r"baselines\.head_init: 'probe' is deprecated"):
        settings = supervised_settings(config, "baselines")
    assert settings["head_init"] == "linear_fit"
    with pytest.warns(FutureWarning, match="'linear_fit'"):
        assert stage_config("baselines", {"head_init": "probe"}).head_init == "linear_fit"


def test_a_shared_key_set_in_the_wrong_place_is_refused() -> None:
    with pytest.raises(Exception, match="l2sp_alpha"):
        _config("supervised: {l2sp_alpha: 0.5}")
    with pytest.raises(Exception, match="freeze_blocks"):
        _config("baselines: {freeze_blocks: 1}")
    with pytest.raises(KeyError, match="no section 'finetune'"):
        supervised_settings(_config(), "finetune")
