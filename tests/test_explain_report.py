"""Explanations that cover the diagnoses with known lab causes, and the probe in report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.lab_lift import (
    ExplainConfig,
    Explanations,
    explained_diagnoses,
    lab_rank,
    top_labs_text,
)
from pipeline.evaluation.probe_fit import Split, Variable, probe_flag, probe_value
from pipeline.evaluation.probe_report import ProbeOutputs, write_outputs
from pipeline.evaluation.report import ProbeFiles, ReportOutputs, build_report
from tests.test_report import CFG, DIAG, evaluate_all, write_world


def test_configured_codes_come_first_and_absent_ones_are_noted() -> None:
    labels = np.array(DIAG)
    frequent = ["I00", "I05", "I01", "I02"]
    cfg = ExplainConfig(diagnoses=("I07", "E875", "I05"), n_frequent=2)
    chosen, notes = explained_diagnoses(labels, frequent, cfg)
    assert chosen == ["I07", "I05", "I00", "I01"]  # frequent ones fill up to n_frequent
    assert len(notes) == 1 and notes[0].startswith("E875: not a diagnosis label")


def test_expected_lab_is_ranked_by_lift() -> None:
    ex = Explanations(
        diagnoses=np.array(["E875", "N183"]),
        labs=np.array(["Sodium_low", "Potassium_high", "Creatinine_high"]),
        lift=np.array([[1.0, 3.0, 2.0], [1.5, np.nan, 1.2]]),
        observed_flagged=np.full((2, 3), np.nan),
        observed_rest=np.full((2, 3), np.nan),
        n_flagged=np.array([5, 5]),
    )
    assert lab_rank(ex, 0, "Potassium_high") == 1
    assert lab_rank(ex, 1, "Creatinine_high") == 2
    assert lab_rank(ex, 1, "Potassium_high") is None
    rows = top_labs_text(ex, {"E875": "Hyperkalemia"}, n=2)
    assert rows[0].startswith("| E875 Hyperkalemia | 5 | Potassium_high x3.00, Creatinine_high")
    assert rows[0].endswith("| Potassium_high #1 |")
    # N18 expects creatinine and urea; urea is not a lab target here, and says so.
    assert rows[1].endswith("| Creatinine_high #2, Urea_Nitrogen_high not a lab target |")


def _probe_files(root: Path) -> ProbeFiles:
    rng = np.random.default_rng(0)
    x = {p: rng.normal(size=(n, 4)) for p, n in (("train", 120), ("val", 40), ("test", 60))}
    y = {p: v[:, 0] + 0.3 * rng.normal(size=len(v)) for p, v in x.items()}
    flag = {p: (v > 0).astype(float) for p, v in y.items()}
    variables = [
        Variable("lab value", "Potassium", "value", np.zeros(0)),
        Variable("lab flag", "Potassium_high", "flag", np.zeros(0)),
    ]
    scores = {
        enc: [
            probe_value(Split(x, y), (1.0,), 50, 0, 10),
            probe_flag(Split(x, flag), (1.0,), 50, 0, 10),
        ]
        for enc in ("random_init", "pretrain")
    }
    out = ProbeOutputs(root / "probe.md", root / "probe.csv", root / "probe.png")
    write_outputs(variables, scores, [], out, n_bootstrap=50)
    return ProbeFiles(out.md, out.csv, out.plot)


@pytest.fixture(scope="module")
def report_md(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("explain_report")
    preds = write_world(root)
    evals = evaluate_all(root, preds, None)
    outputs = ReportOutputs(
        root / "table1.md",
        root / "table1.csv",
        root / "table1.json",
        root / "report.md",
        root / "plots",
    )
    build_report(
        evals,
        preds,
        root / "label_manifest.tsv",
        root / "lab_target_manifest.tsv",
        outputs,
        CFG,
        explain=ExplainConfig(diagnoses=("I08", "E875"), n_frequent=2),
        probe=_probe_files(root),
    )
    return (root / "report.md").read_text()


def test_report_covers_configured_diagnoses(report_md: str) -> None:
    table = report_md.split("## Explanations", 1)[1].split("## Probe", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| I")]
    assert rows[0].startswith("| I08 ")  # configured, though not among the most frequent
    assert len(rows) == 3  # plus the two most frequent
    assert "- E875: not a diagnosis label of this run" in table
    assert "expected lab: rank of 5" in table


def test_report_summarises_the_probe(report_md: str) -> None:
    probe = report_md.split("## Probe: clinical knowledge", 1)[1]
    assert "[probe.md](probe.md)" in probe and "![probe heatmap](probe.png)" in probe
    assert "untrained (random init)" in probe and "stage 1 (ECG vs tabular)" in probe
    assert "| lab value | mean R2 | 1 |" in probe and "| lab flag | mean AUROC | 1 |" in probe
