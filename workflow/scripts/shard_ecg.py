"""Rule shard_ecg: WFDB records of one shard group -> float16 shards + index + quarantine."""

from pathlib import Path

from pipeline.data.shard import ShardConfig, shard_group
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
shard_group(
    cohort=Path(snakemake.input.cohort),
    ecg_root=Path(snakemake.params.ecg_root),
    group=int(snakemake.wildcards.group),
    out_dir=Path(snakemake.output[0]),
    cfg=ShardConfig(**snakemake.params.shard),
    workers=snakemake.threads,
)
