"""One reader for the TSV manifests: codes stay text, missing columns and cells are named,
and training, evaluation and inference read the same file the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.data.tabular import read_manifest
from pipeline.evaluation.predictions import diagnosis_names
from pipeline.infer.bundle import read_label_names
from pipeline.manifests import label_descriptions, manifest_column, read_manifest_tsv
from pipeline.train.data import read_names

MANIFEST = (
    "code\tdescription\tcount\n0389\tSepticaemia, unspecified\t40\nI48\tAtrial fibrillation\t35\n"
)


def _write(tmp_path: Path, text: str, name: str = "label_manifest.tsv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_codes_keep_leading_zeros_and_every_cell_is_text(tmp_path: Path) -> None:
    table = read_manifest_tsv(_write(tmp_path, MANIFEST), ["code"])
    assert table["code"].to_list() == ["0389", "I48"]
    assert table["count"].to_list() == ["40", "35"]  # callers cast what they need


def test_train_evaluation_and_inference_read_the_same_names(tmp_path: Path) -> None:
    path = _write(tmp_path, MANIFEST)
    assert read_names(path, "code") == manifest_column(path, "code") == ["0389", "I48"]
    expected = {"0389": "Septicaemia, unspecified", "I48": "Atrial fibrillation"}
    assert diagnosis_names(path) == read_label_names(path) == label_descriptions(path) == expected


def test_a_missing_column_is_named_with_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "code\tcount\nI48\t3\n")
    with pytest.raises(ValueError, match=r"label_manifest.tsv: no 'description' column"):
        label_descriptions(path)
    with pytest.raises(ValueError, match=r"no 'target' column"):
        manifest_column(path, "target")


def test_an_empty_name_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "code\tcount\nI48\t3\n\t4\n")
    with pytest.raises(ValueError, match=r"empty 'code' value"):
        manifest_column(path, "code")


def test_feature_manifest_goes_through_the_same_reader(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "column\tgroup\tkind\nage\troutine\tcontinuous\nk_mean\tlab\tcontinuous\n",
        "feature_manifest.tsv",
    )
    assert [r["column"] for r in read_manifest(path, "routine")] == ["age"]
    with pytest.raises(ValueError, match=r"feature_manifest.tsv: no 'kind' column"):
        read_manifest(
            _write(tmp_path, "column\tgroup\nage\troutine\n", "feature_manifest.tsv"), "all"
        )
