"""Rule probe_encoder: linear probes on one frozen ECG encoder (pipeline.evaluation.probe)."""

from pathlib import Path

import torch

from pipeline.evaluation.probe import EmbedSettings, ProbeConfig, ProbeInputs, probe_one
from pipeline.logs import setup_logging
from pipeline.models.ops import reuse_freed_memory
from pipeline.train.runtime import select_device

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
train = params.train
torch.set_num_threads(train["num_threads"] or snakemake.threads)
reuse_freed_memory()  # as training does: freed activation blocks reused, not page-faulted anew
cfg = ProbeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.probe.items()})
probe_one(
    ProbeInputs(
        **{
            k: Path(getattr(inp, k))
            for k in ProbeInputs.__dataclass_fields__
            if k != "ground_truth"
        },
        ground_truth=Path(inp.ground_truth[0]) if inp.ground_truth else None,
    ),
    snakemake.wildcards.encoder,
    Path(inp.encoder[0]) if inp.encoder else None,  # none: the untrained encoder
    Path(snakemake.output[0]),
    cfg,
    params.model,
    EmbedSettings(train["crop_samples"], train["eval_crops"], select_device(train["device"])),
    n_bootstrap=params.bootstrap["n_bootstrap"],
    bootstrap_seed=params.bootstrap["seed"],
)
