"""Snakemake script: generate the synthetic cohort (rule synthesize_cohort)."""

import json
from pathlib import Path

from pipeline.io import write_text_atomic
from pipeline.logs import setup_logging
from pipeline.synth import SynthConfig, synthesize_cohort


def main() -> None:
    setup_logging(snakemake.log[0])
    cfg = SynthConfig(**snakemake.params.synthetic)
    summary = synthesize_cohort(
        cfg,
        mimic_iv=Path(snakemake.params.mimic_iv),
        mimic_iv_ed=Path(snakemake.params.mimic_iv_ed),
        mimic_iv_ecg=Path(snakemake.params.mimic_iv_ecg),
        ground_truth=Path(snakemake.output.ground_truth),
        workers=snakemake.threads,  # record writers; the tables take this process ~10 % of it
    )
    write_text_atomic(snakemake.output.done, json.dumps(summary.as_dict(), indent=2) + "\n")


if __name__ == "__main__":  # the record writers (spawned) import this file; only the job runs it
    main()
