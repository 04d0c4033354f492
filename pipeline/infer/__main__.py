"""``python -m pipeline.infer predict ...``: the ``ecg-explain`` command line."""

import sys

from pipeline.infer.cli import main

sys.exit(main())
