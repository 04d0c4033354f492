"""Job priorities: the work left on the longest chain from a job to the end of the run.

Snakemake starts, of the jobs whose inputs exist, those of highest priority first. A job's
priority here is the estimated work on the longest chain of jobs from its start to the
run's end (critical-path list scheduling, Hu 1961; HLFET in Adam et al. 1974): long chains
start first, and the short jobs (per-encoder probes, evaluations) are left to fill the
cores at the end, so the run does not end with one long training job on one core.

Costs are estimates in units of one supervised epoch over all training records with every
encoder block trained (~10 s at the default sizes on one core). They come from the default
run of main at 01c25b0 (``bench/run_profile.py`` on 2 idle cores, one thread per job; the
epoch table's ``epoch_s`` and ``other_s``): a stage-1 epoch against the tabular data costs
about one such epoch (10.7 s vs 10.3-10.7 s), against a second ECG crop 1.8x (19.2 s: two
crops through the encoder); freezing the first of 2 blocks leaves 0.64x (6.7 s), as a
forward of every block plus a backward of the trained ones predicts, (1 + 2 t) / 3 for a
trained fraction t; a head epoch on cached embeddings (frozen encoder) 0.06x (0.6 s). Every
job also pays a fixed part (start-up, embedding caches, head fits, test predictions):
stage 1 ~25 s, a supervised model 51-69 s. Epochs are counted at their cap (early stopping
cannot be foreseen) and at the training records the stage sees (``label_fraction`` for
models trained on diagnoses). Only the order of the priorities matters, so these are
rough on purpose; this module reads neither torch nor snakemake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pipeline.registry import PRETRAINED, ModelSpec

# Fixed costs, in supervised epochs (see the module docstring for where they come from).
STAGE1_FIXED = 2.5  # start-up, reading the data, the collapse check
SUPERVISED_FIXED = 5.5  # embedding caches, head warm start and refit, test predictions
ECG_PARTNER = 1.8  # stage 1 against a second ECG crop: two crops through the encoder
CACHED_HEAD_EPOCH = 0.06  # a head epoch on cached embeddings (frozen encoder)
# Jobs after training, per job: a probe of one encoder (3,026 records x 4 crops embedded,
# 87 linear probes: 25-27 s), the probe's table, one evaluation (5-7 s), report + export.
PROBE_ENCODER = 2.7
PROBE_TABLE = 0.3
EVALUATE = 0.6
REPORT = 1.8

#: The probe's untrained encoder: a probe job of its own that waits on no training.
RANDOM_INIT = "random_init"


def stage_cost(node: str, settings: Mapping[str, Any], table: Mapping[str, ModelSpec]) -> float:
    """Estimated work of training stage ``node`` (supervised epochs, see the module).

    Args:
        node: A key of :data:`pipeline.registry.PRETRAINED` or a model of ``table``.
        settings: The stage's settings as its rule reads them (``Stages.settings``:
            ``pretrain`` or ``stage``, and ``model``), plus ``label_fraction``.
        table: The model registry.
    """
    if node in PRETRAINED:
        per_epoch = ECG_PARTNER if node == "pretrain_ecg_only" else 1.0
        return settings["pretrain"]["epochs"] * per_epoch + STAGE1_FIXED
    stage = settings["stage"]
    if stage.get("freeze_encoder", False):
        per_epoch = CACHED_HEAD_EPOCH
    else:
        n_layers = max(int(settings["model"]["ecg_encoder"]["n_layers"]), 1)
        trained = 1.0 - min(int(stage.get("freeze_blocks", 0)), n_layers) / n_layers
        fraction = settings["label_fraction"] if table[node].task == "diagnoses" else 1.0
        per_epoch = (1.0 + 2.0 * trained) / 3.0 * fraction
    return stage["epochs"] * per_epoch + SUPERVISED_FIXED


def probed(node: str, table: Mapping[str, ModelSpec]) -> bool:
    """Whether the probe reads ``node``'s encoder (stage 1, untrained, ``probe=True``)."""
    return node in (*PRETRAINED, RANDOM_INIT) or (node in table and table[node].probe)


def remaining_work(
    node: str, table: Mapping[str, ModelSpec], cost: Callable[[str], float]
) -> float:
    """Work on the longest chain from the start of ``node``'s job to the end of the run.

    ``node`` is a training stage (its job: ``cost(node)``, then the stages that start from
    it or learn from it as a teacher, its probe and, for a model, its evaluation and the
    report) or :data:`RANDOM_INIT` (only its probe job). ``cost`` gives a stage's work
    (:func:`stage_cost` with the run's settings).
    """

    @cache
    def left(name: str) -> float:
        tails = [PROBE_ENCODER + PROBE_TABLE] if probed(name, table) else []
        if name in table:
            tails.append(EVALUATE + REPORT)
        tails += [left(m.name) for m in table.values() if name in (m.init, m.teacher)]
        own = 0.0 if name == RANDOM_INIT else cost(name)
        return own + max(tails, default=REPORT)

    return round(left(node), 2)
