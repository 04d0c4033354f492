"""Former name of the inference CLI, kept as a thin shim: ``python -m pipeline.explain``.

The code lives in :mod:`pipeline.infer` (``ecg-explain predict`` / ``explain``);
``python -m pipeline.explain --model DIR [--labels TSV] [--json OUT] RECORD ...`` runs
``ecg-explain explain`` with the same arguments.
"""

from __future__ import annotations

import sys

from pipeline.infer.bundle import read_label_names
from pipeline.infer.cli import explain_main
from pipeline.infer.explain import Explanation, Finding, explain_records

__all__ = ["Explanation", "Finding", "explain_records", "main", "read_label_names"]

main = explain_main

if __name__ == "__main__":
    sys.exit(main())
