"""What a CPU training run's bytes depend on beyond config and seeds, recorded in model.json.

Same config, seeds and thread count give byte-identical weights on one machine. Across
machines the float results also depend on the kernels torch runs: its version and the CPU
instruction set it dispatches to (``DEFAULT``, ``AVX2``, ``AVX512``: vector widths change
how sums are split, hence the last bits). numpy (crop positions, preprocessing statistics)
and Python are recorded too, so two runs that differ can be told apart by their model.json,
and so is the resolved ``train.precision`` (``auto`` depends on the device).
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch


def runtime_record(precision: str) -> dict[str, Any]:
    """The ``runtime`` entry of model.json: threads, CPU capability, library versions and the
    resolved ``precision`` (fp32, bf16 or fp16) the stage trained in."""
    return {
        "precision": precision,
        "num_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
