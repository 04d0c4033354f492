"""Stage 1 beyond the ED cohort: extraction on hand-made tables (time window, kept and
dropped records, the cohort's feature columns), fold discipline, and stage 1 on the union."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from mimic_fixtures import build, ecg, ed_dx, lab, patient, stay, ts
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime

from pipeline.data.beyond import BeyondConfig, beyond_train_ids, extract_beyond
from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.data.features import FeatureConfig, extract_features
from pipeline.data.splits import SplitConfig
from pipeline.train.pretrain import pretrain

S1, S2, S3 = 10000001, 10000002, 10000003  # S3 has no patients row
K_ITEM = 50971
COHORT_ECG, NEAR, FAR, NO_PATIENT, ED_NO_DX = 40000001, 40000002, 40000003, 40000004, 40000005


def _rows() -> dict[str, list[dict]]:
    return {
        "patients": [patient(S1, "F", 60, 2180), patient(S2, "M", 50, 2180)],
        "admissions": [
            {
                "subject_id": S1,
                "hadm_id": 20000002,
                "admittime": ts("2180-06-01 08:00:00"),
                "dischtime": ts("2180-06-03 08:00:00"),
                "race": "ASIAN - CHINESE",
            }
        ],
        "edstays": [
            stay(S1, 30000001, "2180-03-01 10:00:00", race="WHITE"),
            stay(S2, 30000002, "2180-04-01 10:00:00", race="BLACK/AFRICAN AMERICAN"),
        ],
        "record_list": [
            ecg(S1, COHORT_ECG, "2180-03-01 10:10:00"),
            ecg(S1, NEAR, "2180-06-01 12:00:00"),  # during the admission, no ED stay
            ecg(S1, FAR, "2180-07-01 12:00:00"),
            ecg(S3, NO_PATIENT, "2180-06-01 12:00:00"),
            ecg(S2, ED_NO_DX, "2180-04-01 10:20:00"),  # in S2's ED window, stay has no codes
        ],
        "diagnosis": [ed_dx(S1, 30000001, "I10")],
        "d_labitems": [
            {"itemid": K_ITEM, "label": "Potassium", "fluid": "Blood", "category": "Chemistry"}
        ],
        "labevents": [
            lab(S1, K_ITEM, "2180-03-01 10:30:00", 4.4),
            lab(S1, K_ITEM, "2180-06-01 11:00:00", 4.0),  # NEAR - 60 min: the edge, in
            lab(S1, K_ITEM, "2180-06-01 12:30:00", 5.0),
            lab(S1, K_ITEM, "2180-06-01 13:01:00", 9.0),  # NEAR + 61 min: out
            lab(S1, K_ITEM, "2180-07-01 13:30:00", 6.0),  # FAR + 90 min: out at 1 h
            lab(S3, K_ITEM, "2180-06-01 12:00:00", 4.0),
        ],
        "vitalsign": [
            {
                "subject_id": S2,
                "stay_id": 30000002,
                "charttime": ts("2180-04-01 10:15"),
                "heartrate": 88.0,
            }
        ],
        "triage": [{"subject_id": S2, "stay_id": 30000002, "heartrate": 92.0, "acuity": 3.0}],
        "omr": [
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 6, 2),
                "seq_num": 1,
                "result_name": "Weight (Lbs)",
                "result_value": "200",
            }
        ],
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("beyond")
    tables = build(tmp, _rows())
    cohort, features = tmp / "cohort.parquet", tmp / "features.parquet"
    extract_cohort(tables, cohort, CohortConfig())
    extract_features(cohort, tables, features, tmp / "manifest.tsv", FeatureConfig())
    return tmp, tables, cohort, features


def _extract(world, hours: float):
    tmp, tables, cohort, features = world
    out, dropped = tmp / f"beyond_{hours}.parquet", tmp / f"dropped_{hours}.tsv"
    cfg = BeyondConfig(lab_window_hours=hours)
    stats = extract_beyond(tables, cohort, features, out, dropped, cfg, FeatureConfig())
    reasons = dict(pl.read_csv(dropped, separator="\t").iter_rows())
    return stats, pl.read_parquet(out), reasons


def test_kept_records_carry_the_cohort_feature_columns(world) -> None:
    stats, beyond, reasons = _extract(world, 1.0)
    cohort_features = pl.read_parquet(world[3])
    assert beyond["study_id"].to_list() == [NEAR, ED_NO_DX]
    assert beyond.columns == [
        "study_id",
        "subject_id",
        "ecg_time",
        "path",
        *cohort_features.columns[1:],
    ]
    assert beyond.select(cohort_features.columns).schema == cohort_features.schema
    assert reasons == {
        FAR: "no lab within +-1 h and no ED vitals",
        NO_PATIENT: "no patients row or anchor year/age",
    }
    assert (stats.n_records, stats.n_out_of_cohort, stats.n_kept, stats.n_with_ed_stay) == (
        5,
        4,
        2,
        1,
    )


def test_lab_window_is_centred_on_the_ecg(world) -> None:
    _, beyond, _ = _extract(world, 1.0)
    near = beyond.filter(pl.col("study_id") == NEAR).row(0, named=True)
    # 11:00 (the edge) and 12:30 are in; 13:01 is not
    assert near["labvalues_potassium_mean"] == pytest.approx(4.5)
    assert (near["labvalues_potassium_first"], near["labvalues_potassium_last"]) == (4.0, 5.0)
    assert near["labvalues_potassium_coeff"] == pytest.approx(1.0 / 90)  # per minute
    # no ED stay: vitals masked; demographics, ethnicity of the admission, biometrics kept
    assert near["vitals_heartrate_mean"] is None and near["vitals_acuity"] is None
    assert (near["demographics_age"], near["demographics_gender"]) == (60.0, "F")
    assert near["demographics_ethnicity"] == "asian"
    assert near["biometrics_weight"] == pytest.approx(200 * 0.45359237)


def test_ecg_in_an_ed_window_gets_its_stay_vitals(world) -> None:
    _, beyond, _ = _extract(world, 1.0)
    row = beyond.filter(pl.col("study_id") == ED_NO_DX).row(0, named=True)
    assert row["vitals_heartrate_mean"] == pytest.approx(90.0)  # triage 92 and 88
    assert row["vitals_acuity"] == "3"
    assert row["demographics_ethnicity"] == "black"
    assert row["labvalues_potassium_mean"] is None


def test_a_wider_window_admits_later_labs(world) -> None:
    _, beyond, reasons = _extract(world, 2.0)
    assert FAR in beyond["study_id"].to_list() and FAR not in reasons
    near = beyond.filter(pl.col("study_id") == NEAR).row(0, named=True)
    assert near["labvalues_potassium_mean"] == pytest.approx(6.0)  # 4, 5 and 9


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lab_window_hours"):
        BeyondConfig(lab_window_hours=0)


def test_validation_and_test_subjects_never_enter_training(tmp_path) -> None:
    # subjects 1..4 are cohort subjects in folds 0 (train), 3 (val), 4 (test), 2 (unused);
    # subject 5 is outside the cohort; record 56 was quarantined (not in the index)
    records = pl.DataFrame(
        {"study_id": [11, 12, 21, 31, 41, 51, 52, 56], "subject_id": [1, 1, 2, 3, 4, 5, 5, 5]}
    )
    records.write_parquet(tmp_path / "beyond.parquet")
    folds = pl.DataFrame({"subject_id": [1, 2, 3, 4, 6], "fold": [0, 3, 4, 2, 1]})
    folds.write_parquet(tmp_path / "folds.parquet")
    index = pl.DataFrame({"study_id": [11, 12, 21, 31, 41, 51, 52, 90]})
    index.write_parquet(tmp_path / "index.parquet")
    cfg = SplitConfig(n_folds=5, seed=0, train_folds=[0, 1], val_folds=[3], test_folds=[4])
    out = tmp_path / "ids.parquet"
    counts = beyond_train_ids(
        tmp_path / "beyond.parquet",
        tmp_path / "folds.parquet",
        tmp_path / "index.parquet",
        out,
        cfg,
    )
    ids = pl.read_parquet(out)
    assert ids["study_id"].to_list() == [11, 12, 51, 52]
    assert ids["fold"].to_list() == [0, 0, None, None]
    assert counts == {"kept": 4, "held_out": 3, "not_sharded": 1}


def _split_world(root, n_beyond: int):
    """The tiny training world with its last ``n_beyond`` training records moved out of the
    cohort: beyond ids and a beyond feature table (with the record columns in front)."""
    world = build_world(root)
    train = pl.read_parquet(world.ids["train"])
    cohort_train, extra = train.head(-n_beyond), train.tail(n_beyond)
    cohort_ids, beyond_ids = root / "cohort_train.parquet", root / "beyond_ids.parquet"
    cohort_train.write_parquet(cohort_ids)
    extra.write_parquet(beyond_ids)
    features = pl.read_parquet(world.features)
    beyond = features.join(extra.select("study_id"), on="study_id", how="semi")
    beyond = beyond.select("study_id", pl.lit(1).alias("subject_id"), pl.exclude("study_id"))
    beyond.write_parquet(root / "beyond.parquet")
    features.join(extra.select("study_id"), on="study_id", how="anti").write_parquet(world.features)
    inputs = replace(
        world.pretrain_inputs(),
        train_ids=cohort_ids,
        beyond_ids=beyond_ids,
        beyond_features=root / "beyond.parquet",
    )
    return world, inputs, cohort_train.height


def test_stage1_trains_on_cohort_and_beyond_records(tmp_path) -> None:
    _, inputs, n_cohort = _split_world(tmp_path, n_beyond=16)
    out = tmp_path / "pretrain"
    pretrain(inputs, out, pretrain_cfg(epochs=1), model_cfg(), runtime())
    meta = json.loads((out / "model.json").read_text())
    assert (meta["n_train"], meta["n_train_beyond"]) == (n_cohort + 16, 16)
    probe = json.loads((out / "probe.json").read_text())
    assert probe["n_fit"] == n_cohort  # the collapse check fits on labelled cohort records only


def test_off_trains_on_the_cohort_training_set_only(tmp_path) -> None:
    world = build_world(tmp_path)
    out = tmp_path / "pretrain"
    pretrain(world.pretrain_inputs(), out, pretrain_cfg(epochs=1), model_cfg(), runtime())
    meta = json.loads((out / "model.json").read_text())
    assert meta["n_train"] == pl.read_parquet(world.ids["train"]).height
    assert "n_train_beyond" not in meta


def test_a_beyond_record_that_is_a_validation_record_stops_stage1(tmp_path) -> None:
    world, inputs, _ = _split_world(tmp_path, n_beyond=8)
    leaked = pl.concat(
        [pl.read_parquet(inputs.beyond_ids), pl.read_parquet(world.ids["val"]).head(2)]
    )
    leaked.write_parquet(inputs.beyond_ids)
    with pytest.raises(ValueError, match="2 record\\(s\\) are also val records"):
        pretrain(inputs, tmp_path / "out", pretrain_cfg(epochs=1), model_cfg(), runtime())


def test_feature_tables_must_share_columns(tmp_path) -> None:
    from pipeline.data.tabular import read_features

    pl.DataFrame({"study_id": [1], "age": [50.0]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"study_id": [2], "path": ["x"]}).write_parquet(tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"b\.parquet: feature column 'age' missing"):
        read_features([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    pl.DataFrame({"study_id": [2], "path": ["x"], "age": [np.float64(61)]}).write_parquet(
        tmp_path / "b.parquet"
    )
    both = read_features([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert both.to_dicts() == [{"study_id": 1, "age": 50.0}, {"study_id": 2, "age": 61.0}]


def _job_inputs(proc, rule: str) -> set[str]:
    """The input files of ``rule``'s job in a dry run's listing."""
    block = (proc.stdout + proc.stderr).split(f"rule {rule}:\n", 1)[1]
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("input:"))
    return set(line.split(":", 1)[1].strip().split(", "))


@pytest.mark.parametrize("enabled", [False, True])
def test_the_switch_changes_only_stage1_inputs(tmp_path, enabled: bool) -> None:
    from snakemake_helpers import REPO, planned_rules, snakemake, write_config

    cfg = write_config(
        tmp_path / "on.yaml", f"beyond_cohort: {{enabled: {str(enabled).lower()}}}\n"
    )
    targets = ("results/models/pretrain", "results/models/pretrain_ecg_only")
    proc = snakemake(tmp_path, REPO / ".test/config.yaml", str(cfg), "-n", *targets, timeout=300)
    rules = planned_rules(proc)
    today = {
        "results/extract/features.parquet",
        "results/extract/feature_manifest.tsv",
        "results/extract/labels.parquet",
        "results/extract/label_manifest.tsv",
        "results/splits/val_ids.parquet",
    }
    beyond_rules = {"extract_beyond", "shard_ecg_beyond", "merge_shards_beyond", "beyond_ids"}
    assert rules["shard_ecg"] == 2 and rules["merge_shards"] == 1  # the cohort's, either way
    if not enabled:  # exactly today's stage-1 inputs and jobs
        assert _job_inputs(proc, "pretrain") == today | {
            "results/shards/index.parquet",
            "results/splits/train_ids.parquet",
        }
        assert not beyond_rules & set(rules)
        return
    assert _job_inputs(proc, "pretrain") == today | {
        "results/shards/index_with_beyond.parquet",
        "results/splits/train_ids.parquet",
        "results/splits/beyond_train_ids.parquet",
        "results/extract/beyond_cohort.parquet",
    }
    assert "results/splits/beyond_train_ids.parquet" in _job_inputs(proc, "pretrain_ecg_only")
    assert {r: rules[r] for r in beyond_rules} == {
        "extract_beyond": 1,
        "shard_ecg_beyond": 2,
        "merge_shards_beyond": 1,
        "beyond_ids": 1,
    }
