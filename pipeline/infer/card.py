"""The model card (markdown) of an exported model: data, cohort, metrics, use and limits.

Everything comes from files the pipeline wrote (model.json, the manifests, Table 1, the
split id lists): counts and metrics only, never a patient identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.infer.bundle import Bundle

LIMITS = """\
- **Associations, not causes.** A predicted lab abnormality says that ECGs like this one
  came with that lab result in the training cohort. It is an explanation of the model's
  evidence, not a measurement of the patient and not the cause of a diagnosis.
- **Cohort.** Trained on emergency-department ECGs of one hospital system (MIMIC-IV-ECG
  linked to MIMIC-IV / -ED) when trained on MIMIC; other populations, devices and
  filtering may shift the probabilities. Re-check calibration on local data first.
- **Labels.** Diagnoses are discharge ICD-10 codes of the stay (billing codes, not
  adjudicated), so some are not visible on an ECG at all.
- **Inputs.** A 10 s, 12-lead resting ECG, single segment; other rates are resampled,
  other durations and lead sets are refused.
- Not a medical device; for research use.
"""

# How the shipped training defaults were chosen (issue 22): the same tuning budget per arm, on
# validation only; the values per variant are in docs/results_synthetic.md, "Recipe parity".
RECIPE = """\
Every arm of the comparison is tuned on the validation fold only, aiming at
the same tuning budget per arm (`snakemake sweep`, synthetic default run, seed 0). So far:
stage 2 (this model's diagnosis head and encoder, section `finetune_diagnoses`)
`freeze_blocks` 0 or 1 x `encoder_lr` 3e-4 or 1e-3, the head `lr` 1e-3 on the best, and
`encoder_lr` 3e-3 (6 settings); the supervised baselines `lr` 3e-4, 1e-3, 3e-3, 1e-2 or 3e-2
(5; validation chose 1e-2); stage 1 an epoch cap of 30 and a Barlow
Twins batch of 128 with a 256-dimensional projector (3; neither adopted). A setting became
the default only when its validation gain exceeded the spread between training seeds. What
was tried, what validation gave and what was not tried are in `docs/results_synthetic.md`
("Recipe parity"); on other data, re-run that grid first.
"""


@dataclass(frozen=True)
class CardInputs:
    """What the card reports beyond model.json.

    Attributes:
        data_source: where the training data came from (e.g. "synthetic cohort").
        split_sizes: records per split (train / val / test).
        table1: Table 1 JSON payload (``rows``), or None when not available.
        notes: extra lines for the data section.
    """

    data_source: str
    split_sizes: dict[str, int] = field(default_factory=dict)
    table1: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


def _cell(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    if cell.get("ci_low") is None:
        return f"{cell['auroc']:.3f}"
    return f"{cell['auroc']:.3f} ({cell['ci_low']:.3f}-{cell['ci_high']:.3f})"


def _table1(payload: dict[str, Any] | None) -> list[str]:
    if not payload or not payload.get("rows"):
        return ["Table 1 was not available when this model was exported."]
    lines = [
        "Macro AUROC on the test fold with 95% bootstrap CIs (`table1.json`):",
        "",
        "| approach | inference needs | diagnoses | labs |",
        "|---|---|---|---|",
    ]
    for row in payload["rows"]:
        lines.append(
            f"| {row['approach']} | {row.get('inference_requires', '')} | "
            f"{_cell(row.get('diagnoses'))} | {_cell(row.get('labs'))} |"
        )
    return lines


def _settings(config: dict[str, Any]) -> str:
    keys = ("epochs", "lr", "encoder_lr", "freeze_blocks", "freeze_encoder", "batch_size")
    shown = ", ".join(f"`{k}` {config[k]}" for k in keys if k in config)
    return f"This model's own training settings (model.json `config`): {shown or 'not recorded'}."


def _outputs(labels: pl.DataFrame, labs: pl.DataFrame) -> list[str]:
    lines = ["| diagnosis | description | training positives |", "|---|---|---|"]
    for row in labels.iter_rows(named=True):
        lines.append(f"| {row['code']} | {row.get('description', '')} | {row.get('count', '')} |")
    lines += ["", "Lab abnormalities: " + ", ".join(f"`{t}`" for t in labs["target"])]
    return lines


def model_card(
    bundle: Bundle, labels: pl.DataFrame, labs: pl.DataFrame, card: CardInputs, err: float
) -> str:
    """Markdown text of the card."""
    meta, p = bundle.meta, bundle.prep
    enc = meta["ecg_encoder"]
    sizes = ", ".join(f"{k} {v}" for k, v in card.split_sizes.items()) or "not recorded"
    lines = [
        f"# Model card: {meta['model']} (ECG-explain)",
        "",
        "## What it does",
        "",
        "From a 10 s 12-lead ECG alone: probabilities of discharge diagnoses (ICD-10) and,",
        "from the same embedding, of lab abnormalities that explain them (e.g. high",
        "potassium next to a renal diagnosis). Intended use: research on ECG-based triage",
        "and on what an ECG reveals about the patient's lab state; screening hypotheses,",
        "not individual clinical decisions.",
        "",
        "## Model",
        "",
        f"S4 encoder ({enc['n_layers']} blocks x {enc['d_model']} channels, state "
        f"{enc['d_state']}, {enc['mode']}, bidirectional={enc['bidirectional']}), pre-trained",
        "against tabular clinical data (Barlow Twins), a diagnosis head (stage 2) and a lab",
        f"head (stage 3) on the frozen encoder. Best epoch {meta.get('best_epoch')}, validation",
        f"macro AUROC {meta.get('best_val_auroc', float('nan')):.3f}.",
        "",
        "## Training recipe",
        "",
        _settings(meta.get("config") or {}),
        "",
        RECIPE,
        "## Input and preprocessing (model.json `preprocessing`)",
        "",
        f"- leads {', '.join(p.leads)} (names matched case-insensitively, aliases accepted);",
        f"- {p.source_samples / p.source_fs:g} s at any whole rate >= {p.fs} Hz, resampled to",
        f"  {p.fs} Hz ({p.n_samples} samples): {p.resampling};",
        f"- amplitudes clipped to +-{p.clip_mv:g} mV, stored as {p.dtype}; {p.imputation};",
        f"- {p.eval_crops} centred crops of {p.crop_samples} samples, probabilities averaged.",
        "",
        "## Data and cohort",
        "",
        f"- source: {card.data_source}; records per split: {sizes};",
        *[f"- {n}" for n in card.notes],
        "",
        "## Outputs",
        "",
        *_outputs(labels, labs),
        "",
        "## Evaluation",
        "",
        *_table1(card.table1),
        "",
        "## Limits",
        "",
        LIMITS,
        "## Files",
        "",
        "`model.safetensors` + `model.json` (torch, `pipeline.infer`), `model.onnx` (onnxruntime",
        f"only; max |onnx - torch| = {err:.1e} on the export check), `labels.tsv`,",
        "`lab_targets.tsv`, `export.json`. Score records with",
        "`ecg-explain predict --model <this dir> --backend onnx --out scores.parquet <records>`.",
        "",
    ]
    return "\n".join(lines)
