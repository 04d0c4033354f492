"""The config contract: schema defaults equal config.yaml, bad configs stop naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from tests.snakemake_helpers import REPO, snakemake

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def test_schema_defaults_are_the_documented_config() -> None:
    # Override files list only what they change; what they omit must be exactly config.yaml.
    config: dict = {}
    validate(config, str(SCHEMA))
    assert config == yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize("name", [".test/config.yaml", "configs/mimic.yaml"])
def test_override_configs_validate(name: str) -> None:
    config = yaml.safe_load((REPO / name).read_text())
    validate(config, str(SCHEMA))
    assert config["model"]["ecg_encoder"]["name"] == "s4"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("pretrain:\n  epoch: 3\n", "'epoch' was unexpected"),
        ("pretrain:\n  epochs: many\n", "'many' is not of type 'integer'"),
        ("model:\n  ecg_encoder:\n    kernel_backend: cuda\n", "'cuda' is not one of"),
        (
            "source:\n  synthetic: false\n  mimic_iv: /nonexistent/mimic-iv\n",
            "config source.mimic_iv: directory '/nonexistent/mimic-iv' does not exist",
        ),
        ("splits:\n  file: /nonexistent/splits.tsv\n", "config splits.file"),
    ],
)
def test_bad_config_stops_naming_the_key(tmp_path: Path, override: str, expected: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(override)
    proc = snakemake(tmp_path, cfg, "-n", check=False, timeout=120)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
