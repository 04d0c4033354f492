"""Every command in the README's shell blocks works as written.

Discovery is data-driven: every fenced block tagged ``bash``, ``sh``, ``shell`` or
``console`` (indented ones too) is read; comments are dropped, ``\\`` continuations joined
and ``&&`` chains split into commands. Each command must match one entry of
:data:`RUNNERS`, which says how it is run; a command no entry matches fails the test, so a
new README command must be given a way to run here. A block runs as one ``bash -eu``
script (variables set by one command reach the next).

Where: a scratch "checkout" whose top-level entries are links to this repository's, and
whose ``results/`` is the tiny run's (the whole DAG on ``.test/config.yaml``, shared with
tests/test_workflow.py). Placeholder paths in :data:`PLACEHOLDERS` (the real-MIMIC dataset
roots) are replaced by the tiny synthetic cohort's dataset roots, i.e. the cohort laid out
as a real PhysioNet download; any other ``/data/`` or ``/path/to/`` path is an error.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.snakemake_helpers import REPO

README = REPO / "README.md"
SHELLS = ("bash", "sh", "shell", "console")

# README placeholder -> dataset root under the tiny run's results/ (relative to the checkout)
PLACEHOLDERS = {
    "/data/mimic-iv/3.1": "results/synthetic/mimic-iv",
    "/data/mimic-iv-ed/2.2": "results/synthetic/mimic-iv-ed",
    "/data/mimic-iv-ecg/1.0": "results/synthetic/mimic-iv-ecg",
}
PIP_DRY_RUN = "--dry-run --no-index --no-build-isolation"
UNMAPPED_PLACEHOLDER = re.compile(r"(?<![\w.])(/data/|/path/to/)\S*")


@dataclass(frozen=True)
class Runner:
    """How one kind of README command is run here."""

    name: str
    matches: Callable[[list[str], str], bool]  # (argv, the command as written)
    run: Callable[[str], str]  # the command as written -> the command to execute
    why: str
    needs_run: bool = False  # reads a finished run's models (else the synthetic cohort is enough)


def _snakemake(argv: list[str], *flags: str) -> bool:
    return argv[:1] == ["snakemake"] and any(f in argv for f in flags)


RUNNERS = [
    Runner(
        "shell variable",
        lambda a, c: re.fullmatch(r"[A-Za-z_]\w*=[^\s$]*(\$\([^)]*\))?\S*", c) is not None,
        lambda c: c,
        "as written (sets a variable later commands of the block use)",
    ),
    Runner(
        "pip install",
        lambda a, c: a[:2] == ["pip", "install"],
        lambda c: c.replace("pip install", f"python -m pip install {PIP_DRY_RUN}", 1),
        "installs nothing: resolved offline, so every requirement (pins, extras) must already "
        "be satisfied by this environment",
    ),
    Runner(
        "test suite",
        lambda a, c: a[:3] == ["python", "-m", "pytest"],
        lambda c: f"{c} --collect-only -q",
        "collected, not run (running the suite from inside itself would recurse)",
    ),
    Runner(
        "snakemake without side effects",
        lambda a, c: _snakemake(a, "--unlock", "--summary", "-n", "--dry-run", "--report"),
        lambda c: c,
        "as written (--report renders the finished tiny run)",
        needs_run=True,
    ),
    Runner(
        "snakemake run",
        lambda a, c: a[:1] == ["snakemake"],
        lambda c: f"{c} -n",
        "dry run (-n): a full run takes minutes on the tiny cohort, days on MIMIC",
    ),
    Runner(
        "inference",
        lambda a, c: a[:1] == ["ecg-explain"] or a[:3] == ["python", "-m", "pipeline.explain"],
        lambda c: c,
        "as written, on the tiny run's models and records",
        needs_run=True,
    ),
]


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` that is outside quotes."""
    for m in re.finditer(r"(^|\s)#", line):
        head = line[: m.start()]
        if head.count("'") % 2 == 0 and head.count('"') % 2 == 0:
            return head.rstrip()
    return line.rstrip()


def readme_blocks(text: str) -> list[list[str]]:
    """The commands of every shell block, block by block."""
    blocks = []
    for m in re.finditer(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", text, flags=re.M | re.S):
        if m.group(2) not in SHELLS:
            continue
        logical, commands = "", []
        for raw in m.group(3).splitlines():
            line = _strip_comment(raw.strip())
            if line.endswith("\\"):
                logical += line[:-1].rstrip() + " "
                continue
            logical += line
            commands += [c.strip() for c in logical.split(" && ") if c.strip()]
            logical = ""
        blocks.append(commands)
    return blocks


def runner_for(command: str) -> Runner:
    try:
        argv = shlex.split(command)
    except ValueError:  # unbalanced quotes: no runner can know what it does
        argv = []
    for runner in RUNNERS:
        if runner.matches(argv, command):
            return runner
    raise AssertionError(
        f"README command not covered by tests/test_readme_commands.py RUNNERS: {command!r}"
    )


def executable(command: str) -> str:
    """The command with placeholders substituted, as its runner executes it."""
    for placeholder, path in PLACEHOLDERS.items():
        command = command.replace(placeholder, path)
    leftover = UNMAPPED_PLACEHOLDER.search(command)
    assert leftover is None, f"unknown placeholder path {leftover.group(0)!r} in {command!r}"
    return runner_for(command).run(command)


BLOCKS = readme_blocks(README.read_text())


def test_readme_commands_are_found() -> None:
    commands = [c for block in BLOCKS for c in block]
    assert any(
        c.startswith("snakemake --cores all --configfile configs/mimic.yaml") for c in commands
    )
    assert any("--unlock" in c for c in commands)
    for command in commands:
        runner_for(command)  # every command has a runner (fails naming the first that has none)


def test_unknown_commands_and_placeholders_fail_loudly() -> None:
    with pytest.raises(AssertionError, match="not covered"):
        runner_for("cp configs/mimic.yaml configs/local.yaml")
    with pytest.raises(AssertionError, match="unknown placeholder"):
        executable("snakemake --config source='{mimic_iv: /path/to/mimic}'")
    blocks = readme_blocks("```bash\nsnakemake --cores all \\\n  --configfile x.yaml  # c\n```\n")
    assert [executable(c) for c in blocks[0]] == ["snakemake --cores all --configfile x.yaml -n"]


def _checkout(workdir: Path, root: Path) -> Path:
    """The repository as a user has it, with ``workdir``'s results/."""
    for entry in REPO.iterdir():
        if entry.name not in {"results", ".snakemake", ".git"}:
            (root / entry.name).symlink_to(entry)
    (root / "results").symlink_to(workdir / "results")
    return root


@pytest.mark.parametrize(
    "index", range(len(BLOCKS)), ids=[f"block{i}-{b[0].split()[0]}" for i, b in enumerate(BLOCKS)]
)
def test_readme_block_runs(request: pytest.FixtureRequest, tmp_path: Path, index: int) -> None:
    # Only blocks that read trained models wait for the whole tiny DAG (shared session run);
    # dry runs and installs need just the synthetic cohort.
    finished = any(runner_for(c).needs_run for c in BLOCKS[index])
    workdir = request.getfixturevalue("tiny_run" if finished else "tiny_synthetic")
    checkout = _checkout(workdir, tmp_path)
    lines = ["set -eu"]
    for command in BLOCKS[index]:
        lines += [f"echo {shlex.quote('>>> ' + command)} >&2", executable(command)]
    proc = subprocess.run(
        ["bash", "-c", "\n".join(lines)],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
    )
    ran = [line[4:] for line in proc.stderr.splitlines() if line.startswith(">>> ")]
    assert proc.returncode == 0, (
        f"README command failed: {ran[-1] if ran else '?'}\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-5000:]}"
    )
    assert ran == BLOCKS[index]  # every command of the block ran
