"""Checking a model directory before it scores: file hashes, manifests and preprocessing.

The export writes ``SHA256SUMS`` (the format ``sha256sum -c`` reads) listing every file of
the directory. :func:`verify_files` checks it: a listed file that is missing or whose
SHA-256 differs, or an exported directory without the list (exported by an earlier
version), is refused. A training output (``results/models/<model>``, no ``export.json``)
has no list; only the presence of its files is checked there.

:func:`check_preprocessing` checks that ``model.json["preprocessing"]`` is one consistent
recipe (the duration at the model rate gives ``n_samples``; the evaluation crops fit) and
:func:`check_manifest` that a directory's ``labels.tsv`` / ``lab_targets.tsv`` list the
model's outputs in output order (the probabilities are named from them).

Every refusal is a :class:`BundleError` whose message is one line naming the file or key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.data.preprocessing import Preprocessing
from pipeline.io import atomic_path, file_sha256, umask_mode
from pipeline.manifests import manifest_column
from pipeline.stops import ExpectedStop

CHECKSUM_FILE = "SHA256SUMS"
EXPORT_MARKER = "export.json"  # written by the export only
REEXPORT = "snakemake --cores all --forcerun export_model"


class BundleError(ExpectedStop, ValueError):
    """A model directory that cannot be trusted to score (the message is one line; in a
    Snakemake job the console shows it without a traceback)."""


def write_checksums(model_dir: Path) -> None:
    """``SHA256SUMS`` over every file of ``model_dir`` (sorted, ``sha256sum`` format)."""
    names = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.name != CHECKSUM_FILE)
    lines = "".join(f"{file_sha256(model_dir / n)}  {n}\n" for n in names)
    with atomic_path(model_dir / CHECKSUM_FILE) as tmp:
        tmp.write_text(lines)
        os.chmod(tmp, umask_mode())


def read_checksums(model_dir: Path) -> dict[str, str] | None:
    """File name -> SHA-256 from ``SHA256SUMS`` (None: the directory has none)."""
    path = model_dir / CHECKSUM_FILE
    if not path.is_file():
        return None
    sums: dict[str, str] = {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name:
            raise BundleError(f"{path} line {k}: not '<sha256>  <file name>'")
        sums[name] = digest
    return sums


def verify_files(model_dir: Path, required: Iterable[str]) -> None:
    """Refuse a directory whose files are missing or differ from ``SHA256SUMS``.

    Args:
        model_dir: the model directory.
        required: files scoring reads (each must exist and, with a list, be listed).
    """
    sums = read_checksums(model_dir)
    listing = model_dir / CHECKSUM_FILE
    if sums is None:
        if (model_dir / EXPORT_MARKER).is_file():
            raise BundleError(
                f"{listing} missing (exported by an earlier version, or removed); "
                f"re-export with: {REEXPORT}"
            )
        for name in required:
            if not (model_dir / name).is_file():
                raise BundleError(f"{model_dir / name} not found")
        return
    for name in required:
        if name not in sums:
            raise BundleError(f"{model_dir / name}: not listed in {listing}")
    for name, digest in sums.items():
        path = model_dir / name
        if not path.is_file():
            raise BundleError(f"{path} not found (listed in {listing})")
        if file_sha256(path) != digest:
            raise BundleError(
                f"{path}: SHA-256 differs from {listing} (changed after export); use an "
                f"intact copy or re-export with: {REEXPORT}"
            )


def check_preprocessing(prep: Preprocessing, where: str) -> None:
    """Refuse a preprocessing whose numbers do not fit together (``where`` names it)."""
    seconds = prep.source_samples / prep.source_fs
    expected = prep.source_samples * prep.fs / prep.source_fs
    if expected != prep.n_samples:
        raise BundleError(
            f"{where}: fs {prep.fs} Hz x {seconds:g} s (source_samples / source_fs) = "
            f"{expected:g} samples, but n_samples is {prep.n_samples}"
        )
    crop, n_crops = prep.crop_samples, prep.eval_crops
    if crop is None or n_crops is None:
        raise BundleError(f"{where}: crop_samples and eval_crops must be set")
    if not 0 < crop <= prep.n_samples or n_crops < 1 or crop * n_crops > prep.n_samples:
        raise BundleError(
            f"{where}: {n_crops} evaluation crop(s) of crop_samples {crop} do not fit in "
            f"n_samples {prep.n_samples}"
        )


def check_manifest(path: Path, column: str, labels: Sequence[str], key: str) -> None:
    """Refuse a manifest whose ``column`` is not ``labels`` (model.json ``key``), in order."""
    try:
        rows = manifest_column(path, column)
    except ValueError as err:  # no such column, an empty cell
        raise BundleError(str(err)) from None
    if len(rows) != len(labels):
        raise BundleError(
            f"{path}: {len(rows)} row(s), model.json {key} has {len(labels)} output(s)"
        )
    for k, (row, label) in enumerate(zip(rows, labels, strict=True)):
        if row != label:
            raise BundleError(
                f"{path}: row {k + 1} is {row!r}, model.json {key}[{k}] is {label!r} "
                "(outputs are named in this order)"
            )
