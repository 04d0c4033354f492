"""``ecg-explain``: score ECG records with a method_labs model (console entry point).

Commands::

    ecg-explain predict --model results/export/method_labs --out scores.parquet \\
        [--list record_list.csv] [--embedding] [--plot figures/] FILE_OR_DIR ...
    ecg-explain explain --model results/models/method_labs FILE ...   # readable text

Files: WFDB, GE MUSE XML, DICOM ECG, HL7 aECG, EDF/BDF, HDF5, .npy/.npz (the last three
need ``--fs`` and ``--leads``; see :mod:`pipeline.data.formats`).

``python -m pipeline.infer ...`` is the same; ``python -m pipeline.explain RECORD ...``
is ``explain`` (the former module name).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline.data.formats import ArraySpec
from pipeline.infer.bundle import BACKENDS, Bundle, BundleError, Scorer, load_bundle, make_scorer
from pipeline.infer.explain import explain_refs
from pipeline.infer.predict import PredictConfig, predict_records
from pipeline.infer.records import RecordRef, expand_inputs, load_batch, read_record_list
from pipeline.logs import setup_logging

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "records",
        nargs="*",
        help="ECG files (WFDB, MUSE XML, DICOM, aECG, EDF, HDF5, .npy/.npz) or directories",
    )
    p.add_argument("--model", type=Path, required=True, help="method_labs model directory")
    p.add_argument("--labels", type=Path, help="label_manifest.tsv for diagnosis names")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="onnx: model.onnx")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("--top", type=int, default=5, help="findings shown per head")
    arrays = p.add_argument_group("array files (HDF5, .npy, .npz)")
    arrays.add_argument("--fs", type=float, help="sampling rate in Hz (CODE-15: 400)")
    arrays.add_argument("--leads", type=_lead_list, help="lead order, comma-separated")
    arrays.add_argument("--units", default="mV", help="amplitude unit: mV, uV or V")


def _lead_list(text: str) -> tuple[str, ...]:
    """``--leads I,II,...``: names in any spelling (unknown names are ignored channels)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parser() -> argparse.ArgumentParser:
    """The ``ecg-explain`` argument parser (subcommands predict and explain)."""
    root = argparse.ArgumentParser(prog="ecg-explain", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="many records -> one parquet/CSV table")
    _common(pr)
    pr.add_argument("--list", type=Path, help="CSV of records (one path column)")
    pr.add_argument("--column", default="path", help="path column of --list")
    pr.add_argument("--root", type=Path, help="--list paths are relative to this")
    pr.add_argument("--out", type=Path, required=True, help=".parquet or .csv")
    pr.add_argument("--embedding", action="store_true", help="add emb_<i> columns")
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument("--chunk-records", type=int, default=4096, help="records per resume part")
    pr.add_argument("--plot", type=Path, help="write <record>.png figures into this folder")
    ex = sub.add_parser("explain", help="print top diagnoses and lab abnormalities")
    _common(ex)
    ex.add_argument("--json", type=Path, help="write every probability to this JSON file")
    return root


def _plot(refs: Sequence[RecordRef], bundle: Bundle, scorer: Scorer, folder: Path, top: int) -> int:
    """One figure per readable record; returns how many were written."""
    from pipeline.infer.plot import plot_record

    n, used = 0, set()
    for ref in refs:
        loaded = load_batch([ref], bundle.prep)
        if not loaded.ok:
            continue
        (explanation,) = explain_refs([ref], bundle, scorer)
        name = ref.base.name + (f"_{ref.item}" if ref.item is not None else "")
        while name in used:  # same record name in two folders
            name += "_"
        used.add(name)
        plot_record(loaded.x[0], explanation, bundle.prep, folder / f"{name}.png", top)
        n += 1
    return n


def _predict(
    args: argparse.Namespace, refs: list[RecordRef], bundle: Bundle, scorer: Scorer
) -> int:
    cfg = PredictConfig(args.batch_size, args.chunk_records, args.embedding, args.backend)
    summary = predict_records(refs, bundle, scorer, args.out, cfg)
    print(
        f"scored {summary.n_scored} of {summary.n_records} record(s), "
        f"{summary.n_failed} unreadable (see column 'error'), {summary.n_warned} with "
        f"plausibility warnings (column 'warning') -> {summary.out}"
    )
    if args.plot:
        print(f"{_plot(refs, bundle, scorer, args.plot, args.top)} figure(s) -> {args.plot}")
    return 0 if summary.n_scored or not summary.n_records else 1


def _explain(
    args: argparse.Namespace, refs: list[RecordRef], bundle: Bundle, scorer: Scorer
) -> int:
    explanations = explain_refs(refs, bundle, scorer)
    print("\n".join(e.summary(args.top) for e in explanations))
    if args.json:
        args.json.write_text(json.dumps([asdict(e) for e in explanations], indent=1) + "\n")
    return 1 if any(e.error for e in explanations) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; exit status 1 when records could not be scored (see each command),
    2 when the model directory is refused (one line on stderr, no traceback)."""
    args = parser().parse_args(argv)
    setup_logging()
    try:
        bundle = load_bundle(args.model, args.labels)
        scorer = make_scorer(bundle, args.backend, args.threads)
    except BundleError as err:
        print(f"ecg-explain: model refused: {err}", file=sys.stderr)
        return 2
    spec = ArraySpec(args.fs, args.leads, args.units)
    refs = expand_inputs(args.records, spec)
    if getattr(args, "list", None):
        refs += read_record_list(args.list, args.column, args.root, spec)
    if not refs:
        parser().error("no records given (paths, directories or --list)")
    run = _predict if args.command == "predict" else _explain
    return run(args, refs, bundle, scorer)


def explain_main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.explain ...``: the ``explain`` command."""
    return main(["explain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
