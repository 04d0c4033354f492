"""Run the workflow as a user would: the snakemake command line in a scratch directory."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(
    workdir: Path, configfile: Path, *args: str, check: bool = True, timeout: int = 1500
) -> subprocess.CompletedProcess[str]:
    """Run ``snakemake`` on this repository's Snakefile with ``workdir`` as working directory."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def planned_rules(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table (empty when nothing to do)."""
    text = proc.stdout + proc.stderr
    counts: dict[str, int] = {}
    table = text.split("Job stats:", 1)
    if len(table) < 2:
        return counts
    for line in table[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line.strip())
        if not m:
            if counts:
                break
            continue
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def write_config(path: Path, text: str, extra: Sequence[str] = ()) -> Path:
    """Write a YAML override config (plus extra lines) and return its path."""
    path.write_text(text + "".join(f"{line}\n" for line in extra))
    return path


def edited_config(path: Path, base: Path, settings: Mapping[str, object]) -> Path:
    """Write ``base`` with dotted settings (``{"splits.seed": 1}``) set, and return ``path``."""
    config = yaml.safe_load(base.read_text())
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(config))
    return path
