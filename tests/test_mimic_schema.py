"""The MIMIC table schema module is the single source of truth, and its rendered doc is current."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline import mimic_schema
from tests.snakemake_helpers import REPO


def test_doc_is_generated_from_the_schema() -> None:
    assert (REPO / "docs/mimic_schema.md").read_text() == mimic_schema.markdown()


def test_every_table_has_a_typed_schema_and_a_mimic_path() -> None:
    for name, spec in mimic_schema.TABLES.items():
        assert spec.relpath.endswith((".csv", ".csv.gz")), name
        assert isinstance(mimic_schema.polars_schema(name), pl.Schema)
    assert mimic_schema.table("labevents").path("/m").as_posix() == "/m/hosp/labevents.csv.gz"
    assert list(mimic_schema.TABLES["record_list"].columns) == [
        "subject_id",
        "study_id",
        "file_name",
        "ecg_time",
        "path",
    ]


def test_unknown_table_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="labevents"):
        mimic_schema.table("labevent")


def test_protocol_constants() -> None:
    assert len(mimic_schema.PROTOCOL_LABS) == 45 and len(set(mimic_schema.PROTOCOL_LABS)) == 45
    assert mimic_schema.LEADS[4:6] == ("aVF", "aVL")  # the release's order, not the textbook's
