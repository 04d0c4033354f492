"""Rule sweep_table: every variant against the default run (pipeline.evaluation.sweep)."""

from pathlib import Path

from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.sweep import SweepOutputs, SweepRun, sweep_table
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
# The three input lists follow params.runs row by row (SWEEP_ROWS in sweep.smk).
runs = [
    SweepRun(variant, model, Path(model_dir), Path(evaluation), Path(predictions))
    for (variant, model), model_dir, evaluation, predictions in zip(
        snakemake.params.runs, inp.model_dirs, inp.evaluations, inp.predictions, strict=True
    )
]
sweep_table(
    runs,
    snakemake.params.settings,
    SweepOutputs(Path(out.md), Path(out.csv), Path(out.json), Path(out.plot)),
    EvalConfig(**snakemake.params.evaluate),
)
