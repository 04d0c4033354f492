"""The CPU a benchmark ran on, for the header of its output (timings are per machine)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """'<model name> (<n> logical CPUs visible)' from /proc/cpuinfo, else platform's guess."""
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    visible = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({visible} logical CPUs visible)"
