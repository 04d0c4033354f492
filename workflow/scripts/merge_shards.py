"""Rule merge_shards: per-group indexes and quarantines -> one index and one quarantine."""

from pathlib import Path

from pipeline.data.shard import merge_shard_groups
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
merge_shard_groups(
    group_dirs=[Path(p) for p in snakemake.input],
    index_out=Path(snakemake.output.index),
    quarantine_out=Path(snakemake.output.quarantine),
)
