"""Rule probe: linear probes on the frozen ECG encoders (pipeline.evaluation.probe)."""

from pathlib import Path

import torch

from pipeline.evaluation.probe import EmbedSettings, ProbeConfig, ProbeInputs, run_probe
from pipeline.evaluation.probe_report import ProbeOutputs
from pipeline.logs import setup_logging
from pipeline.train.runtime import select_device

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
train = params.train
torch.set_num_threads(train["num_threads"] or snakemake.threads)
cfg = ProbeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.probe.items()})
run_probe(
    ProbeInputs(
        **{
            k: Path(getattr(inp, k))
            for k in ProbeInputs.__dataclass_fields__
            if k != "ground_truth"
        },
        ground_truth=Path(inp.ground_truth[0]) if inp.ground_truth else None,
    ),
    {"random_init": None} | {name: Path(getattr(inp, name)) for name in params.encoders},
    ProbeOutputs(
        Path(snakemake.output.md), Path(snakemake.output.csv), Path(snakemake.output.plot)
    ),
    cfg,
    params.model,
    EmbedSettings(train["crop_samples"], train["eval_crops"], select_device(train["device"])),
    n_bootstrap=params.bootstrap["n_bootstrap"],
    bootstrap_seed=params.bootstrap["seed"],
)
