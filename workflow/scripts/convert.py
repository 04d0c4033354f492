"""Rule convert: one MIMIC csv(.gz) table -> typed parquet, streamed in blocks."""

from pathlib import Path

from pipeline.data.convert import ConvertConfig, convert_table
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
cfg = ConvertConfig(**snakemake.params.convert)
convert_table(
    snakemake.wildcards.table,
    Path(snakemake.input[0]),
    Path(snakemake.output[0]),
    batch_rows=cfg.batch_rows,
    projection=cfg.projection,
    threads=snakemake.threads,
)
