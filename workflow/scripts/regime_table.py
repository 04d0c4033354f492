"""Rule regime_table: the regime map over world x label fraction x seed."""

from pathlib import Path

from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.label_groups import parse_group_rules
from pipeline.evaluation.regime import RegimeOutputs, regime_table
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
cells = {}  # (world, fraction) -> seed -> model -> (evaluation, predictions)
files = zip(snakemake.input.evaluations, snakemake.input.predictions, strict=True)
for (world, fraction, seed, model), (evaluation, predictions) in zip(
    snakemake.params.rows, files, strict=True
):
    cell = cells.setdefault((world or "null", float(fraction)), {})
    cell.setdefault(int(seed), {})[model] = (Path(evaluation), Path(predictions))
groups = Path(snakemake.input.groups)
out = snakemake.output
regime_table(
    cells,
    parse_group_rules(groups.read_text().splitlines(), str(groups)),
    RegimeOutputs(Path(out.csv), Path(out.md), Path(out.plot)),
    EvalConfig(**snakemake.params.evaluate),
)
