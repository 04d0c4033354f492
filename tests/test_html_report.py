"""``snakemake --report report.html`` on a finished run lists every result a user looks at.

The report is one self-contained HTML file; Snakemake embeds its results as two JSON
objects (``var results = {path: {...}}`` and ``var categories = {category: {subcategory:
[path, ...]}}``). The expected files are read from the finished tiny run's directories, so
a new figure or model is covered without editing this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.registry import model_names
from tests.snakemake_helpers import REPO, planned_rules, snakemake

TEST_CONFIG = REPO / ".test/config.yaml"


def _embedded(html: str, name: str) -> dict:
    """The JSON object the report assigns to ``var <name>`` in ``<script id="<name>">``."""
    m = re.search(rf'<script id="{name}">\s*var {name} = ', html)
    assert m is not None, f"no `var {name}` in the report"
    obj, _ = json.JSONDecoder().raw_decode(html, m.end())
    return obj


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def html_report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report of the tiny run (written outside it) and what it embeds."""
    before = _snapshot(tiny_run / "results")
    out = tmp_path_factory.mktemp("html_report") / "report.html"
    snakemake(tiny_run, TEST_CONFIG, "--report", str(out), timeout=300)
    assert _snapshot(tiny_run / "results") == before  # the run itself is untouched
    html = out.read_text()
    return {"results": _embedded(html, "results"), "categories": _embedded(html, "categories")}


def _expected(run: Path) -> dict[str, set[str]]:
    """Category -> the run's files (relative paths) that must be in it."""
    res = run / "results"
    rel = lambda paths: {str(p.relative_to(run)) for p in paths}  # noqa: E731
    return {
        "Figures": rel([*(res / "plots").glob("*.png"), res / "probe.png"]),
        "Explanations": rel((res / "plots").glob("*.csv")),
        "Table 1": rel([res / "table1.md", res / "table1.csv"]),
        "Report": rel([res / "report.md"]),
        "Per-label results": rel((res / "evaluation").glob("*_per_label.csv")),
        "Probe": rel([res / "probe.md", res / "probe.csv"]),
        "Model": rel([res / "export/method_labs/MODEL_CARD.md"]),
    }


def test_report_lists_every_result(tiny_run: Path, html_report: dict) -> None:
    expected = _expected(tiny_run)
    # not vacuous: three report figures + the probe plot, the lift table, every model
    assert len(expected["Figures"]) >= 4
    assert len(expected["Explanations"]) >= 1
    assert len(expected["Per-label results"]) == len(model_names())
    every = set().union(*expected.values())
    assert len(every) >= 16
    for path in every:
        assert (tiny_run / path).is_file(), path

    listed = set(html_report["results"])
    assert every <= listed, f"missing from report.html: {sorted(every - listed)}"
    categories = {
        cat: {p for paths in subcats.values() for p in paths}
        for cat, subcats in html_report["categories"].items()
    }
    for cat, paths in expected.items():
        missing = paths - categories.get(cat, set())
        assert not missing, f"not in category {cat!r}: {sorted(missing)}"
    for path in every:  # figures and tables are embedded, not linked
        assert html_report["results"][path]["data_uri"].startswith("data:"), path
        assert html_report["results"][path]["caption"].strip(), path


def test_per_label_results_are_one_subcategory_per_model(html_report: dict) -> None:
    per_label = html_report["categories"]["Per-label results"]
    assert len(per_label) == len(model_names())
    for model, paths in per_label.items():
        assert [Path(p).name for p in paths] == [f"{model}_per_label.csv"]
        assert html_report["results"][paths[0]]["labels"] == {"model": model}


def test_nothing_to_rerun_after_the_report(tiny_run: Path, html_report: dict) -> None:
    assert planned_rules(snakemake(tiny_run, TEST_CONFIG, "-n")) == {}
