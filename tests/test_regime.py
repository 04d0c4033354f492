"""The regime map (pipeline/evaluation/regime.py): label groups, pooled paired differences
per cell and label group, the written table; and the `regime` target's plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.label_groups import (
    GroupRule,
    group_of,
    load_group_rules,
    parse_group_rules,
)
from pipeline.evaluation.regime import (
    RegimeOutputs,
    Resampled,
    cell_rows,
    group_difference,
    label_columns,
    regime_table,
)
from tests.snakemake_helpers import REPO, planned_rules, snakemake, write_config

RULES = [
    GroupRule("I48", "waveform", "AF"),
    GroupRule("E87", "lab", "electrolytes"),
    GroupRule("E875", "lab", "potassium"),
    GroupRule("I50", "none", "HF"),
]


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("I4891", "waveform"),
        ("E875", "lab"),
        ("E87.1", "lab"),
        ("I509", "none"),
        ("K21", "unlisted"),
    ],
)
def test_a_label_takes_its_longest_prefixs_group(code: str, group: str) -> None:
    assert group_of(code, RULES) == group


def test_the_packaged_grouping_places_the_issues_examples() -> None:
    rules = load_group_rules()
    groups = {c: group_of(c, rules) for c in ("I4891", "I447", "I214", "E875", "E871", "D649")}
    assert groups == {
        "I4891": "waveform",
        "I447": "waveform",
        "I214": "waveform",
        "E875": "lab",
        "E871": "lab",
        "D649": "lab",
    }
    assert group_of("N179", rules) == group_of("N183", rules) == "lab"
    assert group_of("R079", rules) == group_of("Z7901", rules) == "none"


def test_a_bad_grouping_row_is_named() -> None:
    text = ["prefix\tgroup\twhy", "I48\twaveform\tAF", "E87\tlabs\ttypo"]
    with pytest.raises(ValueError, match=r"groups.tsv: row 3 \('E87'\)"):
        parse_group_rules(text, "groups.tsv")
    with pytest.raises(ValueError, match="I48 is listed twice"):
        parse_group_rules([*text[:2], "I48\tnone\tagain"], "groups.tsv")


def _res(point: list[float], boot: list[list[float]]) -> Resampled:
    return Resampled(np.array(point), np.array(boot))


def test_group_difference_is_the_macro_of_the_label_differences() -> None:
    a = _res([0.8, 0.6, 0.9], [[0.8, 0.5, 0.9], [0.7, np.nan, 1.0]])
    b = _res([0.7, 0.7, 0.5], [[0.6, 0.7, 0.5], [0.7, np.nan, 0.6]])
    point, boot = group_difference(a, b, np.array([0, 1]))
    assert point == pytest.approx(0.0)  # (0.1 - 0.1) / 2
    np.testing.assert_allclose(
        boot, [0.0, 0.0], atol=1e-12
    )  # (0.2 - 0.2) / 2; label 1: NaN, skipped
    point, boot = group_difference(a, b, np.array([2]))
    assert point == pytest.approx(0.4)
    np.testing.assert_allclose(boot, [0.4, 0.4])


def test_cell_rows_pool_the_seeds_paired_differences_per_group() -> None:
    # two labels (waveform I48, lab E875); seed 0 and 1; 2 resamples
    seeds = {
        0: {
            "a": _res([0.9, 0.7], [[0.9, 0.7], [0.8, 0.6]]),
            "b": _res([0.8, 0.7], [[0.7, 0.7], [0.8, 0.7]]),
        },
        1: {
            "a": _res([0.7, 0.8], [[0.7, 0.8], [0.6, 0.9]]),
            "b": _res([0.7, 0.6], [[0.6, 0.6], [0.7, 0.6]]),
        },
    }
    columns = label_columns(["I480", "E875"], RULES)
    assert {g: c.tolist() for g, c in columns.items()} == {
        "all": [0, 1],
        "waveform": [0],
        "lab": [1],
    }
    rows = {(r["kind"], r["name"], r["group"]): r for r in cell_rows(seeds, columns, [("a", "b")])}
    wave = rows[("difference", "a - b", "waveform")]
    # seed 0: +0.1 (resamples +0.2, 0.0); seed 1: 0.0 (+0.1, -0.1): pooled +0.05 (+0.15, -0.05)
    assert wave["point"] == pytest.approx(0.05) and wave["per_seed"] == "0.1000;0.0000"
    assert (wave["ci_low"], wave["ci_high"]) == pytest.approx((-0.045, 0.145))
    lab = rows[("difference", "a - b", "lab")]
    assert lab["point"] == pytest.approx(0.1) and lab["n_labels"] == 1  # (0.0 + 0.2) / 2
    overall = rows[("difference", "a - b", "all")]
    assert overall["point"] == pytest.approx(0.075) and overall["n_seeds"] == 2
    assert rows[("auroc", "a", "all")]["point"] == pytest.approx((0.8 + 0.75) / 2)


MODELS = ("signal_only", "method_diagnoses", "ssl_ecg_only", "distilled")
CFG = EvalConfig(n_bootstrap=50, seed=1)


def _cell(root: Path, shift: float) -> dict[int, dict[str, tuple[Path, Path]]]:
    """Two seeds of four models on 120 shared records and three labels."""
    rng = np.random.default_rng(0)
    n = 120
    study_id = np.arange(n, dtype=np.int64) + 1000
    target = (rng.random((n, 3)) < 0.4).astype(np.float32)
    out: dict[int, dict[str, tuple[Path, Path]]] = {}
    for seed in (0, 1):
        out[seed] = {}
        for i, model in enumerate(MODELS):
            noise = rng.normal(size=target.shape)
            prob = 1 / (1 + np.exp(-(target * (0.5 + shift * i) + noise)))
            pred = root / f"s{seed}/{model}.npz"
            pred.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                pred, study_id=study_id, prob=prob, target=target,
                labels=np.array(["I480", "E875", "I10"]), task=np.array("diagnoses"),
            )  # fmt: skip
            evaluation = pred.with_suffix(".json")
            evaluate_predictions(pred, evaluation, pred.with_suffix(".csv"), CFG)
            out[seed][model] = (evaluation, pred)
    return out


def test_regime_table_writes_every_cell_and_group(tmp_path: Path) -> None:
    cells = {
        ("realistic", 1.0): _cell(tmp_path / "r", 0.5),
        ("null", 1.0): _cell(tmp_path / "n", 0),
    }
    out = RegimeOutputs(tmp_path / "regime.csv", tmp_path / "regime.md", tmp_path / "regime.png")
    frame = regime_table(cells, load_group_rules(), out, CFG)
    diffs = pl.read_csv(out.csv).filter(pl.col("kind") == "difference")
    assert diffs.height == 2 * 3 * 4  # cells x comparisons x (all, waveform, lab, none)
    assert set(diffs["group"]) == {"all", "waveform", "lab", "none"}

    # a stronger method in the realistic cell than in the null one
    def method_gain(world: str) -> float:
        row = frame.filter(
            (pl.col("world") == world)
            & (pl.col("name") == "method_diagnoses - signal_only")
            & (pl.col("group") == "all")
        )
        return float(row["point"][0])

    assert method_gain("realistic") > method_gain("null")
    md = out.md.read_text()
    assert "| realistic | 1 | " in md and "waveform (1)" in md and "- null, lab: E875" in md
    assert out.plot.stat().st_size > 0


def test_the_regime_target_plans_each_worlds_cohort_once(tmp_path: Path) -> None:
    grid = write_config(
        tmp_path / "grid.yaml",
        'regime: {worlds: [realistic, "null"], label_fractions: [1.0, 0.5], seeds: [0]}',
    )
    proc = snakemake(tmp_path, REPO / ".test/config.yaml", str(grid), "-n", "regime")
    planned = planned_rules(proc)
    # two cohorts (the default's and the null world's), four label subsets, stage 1 once per
    # world (shared across label fractions), five models per cell
    assert planned["synthesize_cohort"] == planned["merge_shards"] == 2
    assert planned["label_subset"] == 4 and planned["pretrain"] == 2
    assert planned["train_model"] == 4 * 5 and planned["regime_table"] == 1
    log = proc.stdout + proc.stderr
    assert "results/regime/world-null/extract/cohort.parquet" in log
    assert "results/regime/world-realistic" not in log  # the default run's cohort
    assert "results/splits/train_labelled_ids_0.5.parquet" in log
