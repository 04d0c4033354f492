"""Former name of the inference CLI, kept only as a command: ``python -m pipeline.explain``.

``python -m pipeline.explain --model DIR [--labels TSV] [--json OUT] RECORD ...`` runs
``ecg-explain explain`` with the same arguments. Explanations themselves are
:mod:`pipeline.infer.explain` (the one module of that meaning); import from there.
"""

from __future__ import annotations

import sys

from pipeline.infer.cli import explain_main

main = explain_main

if __name__ == "__main__":
    sys.exit(main())
