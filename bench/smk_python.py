"""Python logic in workflow/rules/*.smk: lines and functions outside the Snakemake directives.

Counts, per .smk file, the non-blank, non-comment lines that are not part of a rule (or
other Snakemake directive) block, i.e. the Python a reader must follow and that tests reach
only through a Snakemake subprocess, and the ``def`` statements among them (issue 21).

    python bench/smk_python.py [REPO]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Top-level Snakemake directives: their indented block is workflow wiring, not Python logic.
DIRECTIVE = re.compile(
    r"^(rule|use rule|checkpoint|include|wildcard_constraints|configfile|report|localrules"
    r"|ruleorder|onstart|onsuccess|onerror|module|container|conda|envvars|pepfile)\b"
)


def python_lines(text: str) -> tuple[int, int]:
    """(lines of Python logic, functions defined) of one .smk file."""
    lines = functions = 0
    directive_indent = -1  # indentation of the directive whose block we are in (-1: none)
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if directive_indent >= 0 and indent > directive_indent:
            continue  # inside a rule (or other directive) block
        directive_indent = indent if DIRECTIVE.match(stripped) else -1
        if directive_indent >= 0:
            continue
        lines += 1
        functions += stripped.startswith("def ")
    return lines, functions


def main(repo: Path) -> None:
    total_lines = total_functions = 0
    for path in sorted((repo / "workflow/rules").glob("*.smk")):
        lines, functions = python_lines(path.read_text())
        total_lines += lines
        total_functions += functions
        print(f"{path.name:24s} {lines:4d} lines {functions:3d} functions")
    print(f"{'total':24s} {total_lines:4d} lines {total_functions:3d} functions")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
