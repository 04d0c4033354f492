"""Feeding a head fit from cached embeddings: one fancy index per batch vs item by item.

The head warm start, the head refit and a head on a frozen encoder train on cached (N, K, D)
crop embeddings (:class:`pipeline.train.embed.CachedEmbeddings`). :class:`EpochLoader` asks
the dataset for a whole batch (``rows``); the baseline, measured in the same run and
alternated pass by pass, is what the loader did before: a DataLoader over the same batches
fetching and collating item by item. Also timed: the head's own steps on those batches
(an MLP head as ``model.make_head`` builds it, AdamW, masked BCE), for scale. One thread;
the pipeline's allocator setting (``reuse_freed_memory``) as every job has it. Usage::

    python bench/head_feed.py                          # the default run's shapes
    python bench/head_feed.py --records 20000 --labels 1428 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.losses.masked_bce import masked_bce
from pipeline.models.ops import reuse_freed_memory
from pipeline.models.supervised import make_head
from pipeline.train.data import EpochLoader
from pipeline.train.embed import CachedEmbeddings


def _pass(batches: object) -> float:
    start = time.perf_counter()
    for _ in batches:  # type: ignore[attr-defined]
        pass
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2498, help="training records (default run)")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--labels", type=int, default=71)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="epochs timed per variant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(args.records, args.crops, args.dim)).astype(np.float32)
    targets = (rng.random((args.records, args.labels)) < 0.1).astype(np.float32)
    ds = CachedEmbeddings(emb, targets, train=True)
    loader = EpochLoader(ds, args.batch, shuffle=True, drop_last=True, seed=0)
    stacked, per_item = [], []
    for epoch in range(args.repeats):
        loader.set_epoch(epoch)
        stacked.append(_pass(loader))
        loader.set_epoch(epoch)  # the same batches, fetched and collated item by item
        per_item.append(_pass(DataLoader(ds, batch_sampler=loader._batches())))
    head = make_head(
        {"kind": "mlp", "in_dim": args.dim, "out_dim": args.labels, "hidden": [128]}
        | {"dropout": 0.1, "norm": True}
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    batches = list(loader)
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        masked_bce(head(batch["emb"]), batch["target"]).backward()
        optimizer.step()
    steps = time.perf_counter() - start
    ratio = statistics.median(b / a for a, b in zip(stacked, per_item, strict=True))
    print(f"{len(batches)} batches of {args.batch} (record, crop) rows per epoch, 1 thread")
    print(f"feed, item by item (before): {statistics.median(per_item) * 1000:8.1f} ms per epoch")
    print(f"feed, stacked rows (now):    {statistics.median(stacked) * 1000:8.1f} ms per epoch")
    print(f"feed speed-up:               {ratio:8.1f}x")
    print(f"head steps, for scale:       {steps * 1000:8.1f} ms per epoch")


if __name__ == "__main__":
    main()
