"""Rule study_table1: Table 1 over the study seeds (pipeline.evaluation.study)."""

from pathlib import Path

from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.study import StudyOutputs, study_table
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
seeds, models = snakemake.params.seeds, snakemake.params.models
# expand() orders the files seed-major, model-minor (see the rule's inputs).
pairs = [(s, m) for s in seeds for m in models]


def by_seed(paths):
    out = {s: {} for s in seeds}
    for (s, m), path in zip(pairs, paths, strict=True):
        out[s][m] = Path(path)
    return out


out = snakemake.output
study_table(
    by_seed(snakemake.input.evaluations),
    by_seed(snakemake.input.predictions),
    StudyOutputs(Path(out.md), Path(out.csv), Path(out.json)),
    EvalConfig(**snakemake.params.evaluate),
)
