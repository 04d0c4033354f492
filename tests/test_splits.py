"""Patient-grouped stratified folds, user split files, id lists and lab-target selection."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.data.splits import SplitConfig, make_splits, select_lab_targets, stage_ids

ROLES = {"train_folds": list(range(18)), "val_folds": [18], "test_folds": [19]}


def cfg(**kw) -> SplitConfig:
    return SplitConfig(**({"n_folds": 20, "seed": 0, **ROLES, "file": None} | kw))


def write_inputs(tmp: Path, n_subjects: int = 600, seed: int = 0) -> tuple[Path, Path]:
    """A cohort of subjects with 1-4 ECGs (2 stays) and 12 labels of very different
    prevalence, rarer labels tied to subjects; returns (cohort, labels) parquet paths."""
    rng = np.random.default_rng(seed)
    prev = np.array([0.4, 0.25, 0.15, 0.1, 0.07, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02, 0.015])
    rows, labels = [], []
    study = 40000000
    for s in range(n_subjects):
        subject = 10000000 + s
        subject_labels = rng.random(len(prev)) < prev * 1.5
        age, gender = float(rng.integers(18, 95)), "FM"[int(rng.integers(2))]
        for j in range(int(rng.integers(1, 5))):
            stay = 30000000 + 2 * s + (j >= 2)
            rows.append(
                (study, subject, stay, datetime(2150, 1, 1) + timedelta(hours=j), age, gender)
            )
            labels.append(subject_labels & (rng.random(len(prev)) < 0.8))
            study += 1
    cohort = pl.DataFrame(
        rows,
        schema=["study_id", "subject_id", "stay_id", "ecg_time", "age", "gender"],
        orient="row",
    ).with_columns(
        first_in_stay=pl.col("ecg_time") == pl.col("ecg_time").min().over("stay_id"),
        path=pl.lit("files/x"),
    )
    lab = pl.DataFrame(np.array(labels, dtype=np.uint8), schema=[f"L{i}" for i in range(12)])
    lab = lab.with_columns(study_id=cohort["study_id"]).select("study_id", pl.exclude("study_id"))
    cohort.write_parquet(tmp / "cohort.parquet")
    lab.write_parquet(tmp / "labels.parquet")
    return tmp / "cohort.parquet", tmp / "labels.parquet"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_inputs(tmp_path_factory.mktemp("splits"))


def folds_of(cohort: Path, labels: Path, out: Path, c: SplitConfig) -> pl.DataFrame:
    make_splits(cohort, labels, out, c)
    return pl.read_parquet(out)


def imbalance(cohort: Path, labels: Path, fold: dict[int, int], n_folds: int = 20) -> float:
    """Mean over labels, age decades and gender of the per-fold std of positive subjects,
    relative to the expected count per fold (computed here, independently)."""
    c = pl.read_parquet(cohort).join(pl.read_parquet(labels), on="study_id")
    subj = c.group_by("subject_id").agg(
        pl.col("^L\\d+$").max(), pl.col("age").first(), pl.col("gender").first()
    )
    attrs = [subj[f"L{i}"].to_numpy() for i in range(12)]
    attrs += [((subj["age"] // 10) == d).to_numpy() for d in range(1, 10)]
    attrs += [(subj["gender"] == "F").to_numpy()]
    f = np.array([fold[s] for s in subj["subject_id"]])
    scores = []
    for a in attrs:
        if a.sum() < n_folds:
            continue
        per_fold = np.bincount(f, weights=a.astype(float), minlength=n_folds)
        scores.append(per_fold.std() / (a.sum() / n_folds))
    return float(np.mean(scores))


def test_folds_are_patient_grouped_complete_and_seeded(inputs, tmp_path) -> None:
    cohort, labels = inputs
    folds = folds_of(cohort, labels, tmp_path / "a.parquet", cfg())
    assert folds.schema == pl.Schema(
        {"subject_id": pl.Int64, "fold": pl.Int32, "label_rank": pl.Float64}
    )
    subjects = pl.read_parquet(cohort)["subject_id"].unique()
    assert folds["subject_id"].n_unique() == folds.height  # no subject in two folds
    assert set(folds["subject_id"]) == set(subjects)
    assert set(folds["fold"]) == set(range(20))
    sizes = np.bincount(folds["fold"].to_numpy())
    assert sizes.max() - sizes.min() <= 0.5 * sizes.mean()
    again = folds_of(cohort, labels, tmp_path / "b.parquet", cfg())
    assert again.equals(folds)
    other = folds_of(cohort, labels, tmp_path / "c.parquet", cfg(seed=1))
    assert not other.equals(folds)


def test_stratification_beats_a_random_group_split(inputs, tmp_path) -> None:
    cohort, labels = inputs
    folds = folds_of(cohort, labels, tmp_path / "f.parquet", cfg())
    ours = imbalance(cohort, labels, dict(folds.select("subject_id", "fold").iter_rows()))
    subjects = folds["subject_id"].to_numpy()
    random_scores = []
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(subjects))
        random_scores.append(
            imbalance(
                cohort,
                labels,
                dict(zip(subjects[perm], np.arange(len(subjects)) % 20, strict=True)),
            )
        )
    assert ours < 0.6 * np.mean(random_scores), (ours, random_scores)


def test_user_split_file_is_used_and_validated(inputs, tmp_path) -> None:
    cohort, labels = inputs
    subjects = pl.read_parquet(cohort)["subject_id"].unique().sort()
    user = pl.DataFrame({"subject_id": subjects, "fold": np.arange(len(subjects)) % 20})
    extra = pl.DataFrame({"subject_id": [99999999], "fold": [3]})
    for name, writer in [
        ("s.csv", lambda df, p: df.write_csv(p)),
        ("s.tsv", lambda df, p: df.write_csv(p, separator="\t")),
        ("s.parquet", lambda df, p: df.write_parquet(p)),
    ]:
        writer(pl.concat([user, extra]), tmp_path / name)
        folds = folds_of(cohort, labels, tmp_path / "o.parquet", cfg(file=str(tmp_path / name)))
        assert folds.drop("label_rank").equals(user.cast({"fold": pl.Int32}))  # extra ignored

    bad = {
        "missing.csv": (user.slice(1), "1 cohort subject"),
        "dup.csv": (pl.concat([user, user.head(1)]), "listed twice"),
        "range.csv": (user.with_columns(fold=pl.lit(20)), r"\[20\] outside \[0, n_folds=20\)"),
        "nocol.csv": (user.rename({"fold": "split"}), "column 'fold' missing"),
        "text.csv": (user.with_columns(fold=pl.lit("a")), "must be integers"),
    }
    for name, (df, message) in bad.items():
        df.write_csv(tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            make_splits(cohort, labels, tmp_path / "x.parquet", cfg(file=str(tmp_path / name)))
    with pytest.raises(ValueError, match=r"s\.xlsx: unknown format"):
        (tmp_path / "s.xlsx").write_text("")
        make_splits(cohort, labels, tmp_path / "x.parquet", cfg(file=str(tmp_path / "s.xlsx")))
    assert not (tmp_path / "x.parquet").exists()


def test_config_fold_roles_are_validated() -> None:
    with pytest.raises(
        ValueError, match=r"splits\.test_folds: fold 18 is also in splits\.val_folds"
    ):
        cfg(test_folds=[18])
    with pytest.raises(ValueError, match=r"splits\.val_folds: fold 20 outside"):
        cfg(val_folds=[20])


def test_stage_ids_first_in_stay_and_shard_filter(inputs, tmp_path) -> None:
    cohort, labels = inputs
    c = cfg(train_folds=list(range(16)), val_folds=[16, 17], test_folds=[19])
    folds = tmp_path / "folds.parquet"
    make_splits(cohort, labels, folds, c)
    ecgs = pl.read_parquet(cohort)
    dropped = set(ecgs["study_id"].sample(fraction=0.2, seed=1))  # "quarantined"
    index = tmp_path / "index.parquet"
    ecgs.filter(~pl.col("study_id").is_in(list(dropped))).select("study_id").write_parquet(index)
    out = {p: tmp_path / f"{p}_ids.parquet" for p in ("train", "val", "test")}
    counts = stage_ids(folds, cohort, index, out, c)

    fold_of = dict(pl.read_parquet(folds, columns=["subject_id", "fold"]).iter_rows())
    first = dict(zip(ecgs["study_id"], ecgs["first_in_stay"], strict=True))
    subject = dict(zip(ecgs["study_id"], ecgs["subject_id"], strict=True))
    roles = {"train": set(range(16)), "val": {16, 17}, "test": {19}}
    for part, path in out.items():
        ids = pl.read_parquet(path)
        assert ids.schema == pl.Schema({"study_id": pl.Int64, "fold": pl.Int32})
        assert counts[part] == ids.height > 0
        want = {
            s
            for s in ecgs["study_id"]
            if fold_of[subject[s]] in roles[part]
            and s not in dropped
            and (part == "train" or first[s])
        }
        assert set(ids["study_id"]) == want
        assert all(fold_of[subject[s]] == f for s, f in ids.iter_rows())
    assert not pl.read_parquet(out["train"])["fold"].is_in([16, 17, 18, 19]).any()


def test_select_lab_targets_threshold(tmp_path) -> None:
    # val ids 1-6, test ids 11-16; min_per_class = 2
    vals = {
        # target: values for val ids 1..6, test ids 11..16 (None = not measured)
        "K_high": [1, 1, 0, 0, None, 0, 1, 1, 0, 0, 0, None],  # 2/3 and 2/3: kept
        "K_low": [1, 1, 0, 0, 0, 0, 1, None, 0, 0, 0, 0],  # 1 pos in test: dropped
        "Na_low": [1, 1, 1, 0, None, None, 1, 1, 0, 0, None, None],  # 1 neg in val: dropped
        "Ca_high": [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, None, None],  # exactly 2 each: kept
    }
    ids = [1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]
    lt = pl.DataFrame({"study_id": [*ids, 99]} | {k: [*v, 1] for k, v in vals.items()})
    lt = lt.cast({k: pl.Int8 for k in vals} | {"study_id": pl.Int64})
    lt.write_parquet(tmp_path / "lt.parquet")
    for name, part in (("val", ids[:6]), ("test", ids[6:])):
        pl.DataFrame({"study_id": part, "fold": [0] * 6}).write_parquet(
            tmp_path / f"{name}.parquet"
        )
    kept = select_lab_targets(
        tmp_path / "lt.parquet", tmp_path / "val.parquet", tmp_path / "test.parquet",
        tmp_path / "sel.tsv", 2,
    )  # fmt: skip
    assert kept == ["K_high", "Ca_high"]
    table = pl.read_csv(tmp_path / "sel.tsv", separator="\t")
    assert table.columns == ["target", "n_pos_val", "n_neg_val", "n_pos_test", "n_neg_test"]
    assert table.rows() == [("K_high", 2, 3, 2, 3), ("Ca_high", 4, 2, 2, 2)]


REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = "workflow/schemas/config.schema.yaml"


@pytest.mark.slow
def test_editing_splits_reruns_only_split_rules(tmp_path) -> None:
    """Run the shard and split rules once, then dry-run after a split edit and after a
    shard edit: a split edit never re-runs sharding, a shard edit never re-runs folds."""
    import os
    import re
    import subprocess
    import sys

    import yaml

    from tests.wfdb_fixtures import make_cohort

    ecg = tmp_path / "results" / "source_ecg"
    cohort, _ = make_cohort(ecg, 16)
    (ecg / "record_list.csv").write_text("subject_id,study_id,file_name,ecg_time,path\n")
    extract = tmp_path / "results" / "extract"
    extract.mkdir(parents=True)
    cohort.write_parquet(extract / "cohort.parquet")
    rng = np.random.default_rng(0)
    ids_ = cohort["study_id"]
    pl.DataFrame({"study_id": ids_, "I48": (rng.random(16) < 0.5).astype(np.uint8)}).write_parquet(
        extract / "labels.parquet"
    )
    pl.DataFrame({"study_id": ids_, "K_high": rng.integers(0, 2, 16)}).cast(
        {"K_high": pl.Int8}
    ).write_parquet(extract / "lab_targets.parquet")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["source"]["mimic_iv_ecg"] = str(ecg)
    config["splits"] |= {"n_folds": 4, "train_folds": [0, 1], "val_folds": [2], "test_folds": [3]}
    config["lab_targets"]["min_per_class"] = 0  # random targets: keep them all
    (tmp_path / "Snakefile").write_text(
        'configfile: "config.yaml"\n'
        # runs.smk reads the schema as the Snakefile loads it
        "import yaml, pathlib\n"
        f'SCHEMA = yaml.safe_load(pathlib.Path("{REPO}/{SCHEMA_PATH}").read_text())\n'
        + "".join(
            f'include: "{REPO}/workflow/rules/{r}.smk"\n'
            for r in ("common", "runs", "shard", "splits")
        )
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    targets = ["results/splits/lab_targets_selected.tsv", "results/splits/train_ids.parquet"]

    def snakemake(*args: str) -> str:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, *targets]
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        return res.stdout + res.stderr

    def edit_and_dry_run(section: str, key: str, value: object) -> set[str]:
        config[section][key] = value
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        return set(re.findall(r"^(?:local)?rule (\w+):", snakemake("-n"), flags=re.M))

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake()
    assert edit_and_dry_run("splits", "seed", 7) == {
        "make_splits",
        "stage_ids",
        "select_lab_targets",
    }
    config["splits"]["seed"] = 0
    assert edit_and_dry_run("shard", "clip_mv", 2.5) == {
        "shard_ecg",
        "merge_shards",
        "stage_ids",
        "select_lab_targets",
    }
