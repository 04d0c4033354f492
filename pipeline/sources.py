"""Where the workflow reads MIMIC from: each table's source file under its dataset root.

The Snakefile converts every table of :data:`TABLES` (one job each) from the PhysioNet
layout under ``config.source``; :func:`source_errors` names what is missing before the DAG
is built. This module imports neither torch nor snakemake.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# MIMIC tables the pipeline reads (converted to parquet one job each).
TABLES = (
    "record_list",
    "patients",
    "admissions",
    "labevents",
    "d_labitems",
    "omr",
    "diagnoses_icd",
    "d_icd_diagnoses",
    "edstays",
    "triage",
    "vitalsign",
    "diagnosis",
)
ED_TABLES = ("edstays", "triage", "vitalsign", "diagnosis")
DATASETS = ("mimic_iv", "mimic_iv_ed", "mimic_iv_ecg")

# Parquet tables each extraction step reads.
_FEATURE_TABLES = ("labevents", "d_labitems", "vitalsign", "triage", "omr", "admissions", "edstays")
EXTRACT_INPUTS: Mapping[str, tuple[str, ...]] = {
    "cohort": ("record_list", "edstays", "patients", "diagnoses_icd", "diagnosis"),
    "features": _FEATURE_TABLES,
    "labels": ("diagnoses_icd", "diagnosis", "d_icd_diagnoses"),
    "lab_targets": ("labevents", "d_labitems"),
    # stage 1 beyond the cohort (pipeline.data.beyond): the records and the feature tables
    "beyond": ("record_list", "patients", *_FEATURE_TABLES),
}


def source_path(source: Mapping[str, Any], table: str) -> str:
    """The source csv(.gz) of a MIMIC table under its dataset root (config ``source``)."""
    if table == "record_list":
        return f"{source['mimic_iv_ecg']}/record_list.csv"
    if table in ED_TABLES:
        return f"{source['mimic_iv_ed']}/ed/{table}.csv.gz"
    return f"{source['mimic_iv']}/hosp/{table}.csv.gz"


def source_errors(config: Mapping[str, Any]) -> list[str]:
    """Missing real-data sources and split file, each naming its config key."""
    source = config["source"]
    errors = [
        f"source.{key}: directory {source[key]!r} does not exist "
        "(point it at the PhysioNet download, or set source.synthetic: true)"
        for key in DATASETS
        if not source["synthetic"] and not Path(source[key]).is_dir()
    ]
    missing = [source_path(source, t) for t in TABLES if not Path(source_path(source, t)).is_file()]
    if not errors and not source["synthetic"] and missing:
        errors.append(
            f"source: {len(missing)} of {len(TABLES)} source tables not found, "
            f"e.g. {missing[0]!r} (paths follow the PhysioNet layout, see docs/mimic_schema.md)"
        )
    if config["probe"]["ground_truth"] is True and not source["synthetic"]:
        errors.append(
            "probe.ground_truth: true needs source.synthetic: true (only the synthetic cohort"
            " has a ground truth); use auto or false"
        )
    split_file = config["splits"]["file"]
    if split_file and not Path(split_file).is_file():
        errors.append(f"splits.file: {split_file!r} does not exist")
    return errors


def probes_ground_truth(config: Mapping[str, Any]) -> bool:
    """Whether the probe also reads the synthetic cohort's latent physiology."""
    wanted = config["probe"]["ground_truth"]
    return bool(wanted is True or (wanted == "auto" and config["source"]["synthetic"]))
