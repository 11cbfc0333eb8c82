"""report.tex -> report.pdf with pdflatex, when it is on the PATH."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from reidbench.errors import UserError

PDFLATEX = "pdflatex"
NO_PDFLATEX = (
    "pdflatex is not on the PATH; install TeX Live (e.g. apt-get install texlive-latex-base "
    "texlive-latex-recommended) or compile report.tex elsewhere"
)
TIMEOUT_S = 300


def pdflatex_available() -> bool:
    """Whether ``pdflatex`` can be run."""
    return shutil.which(PDFLATEX) is not None


def compile_latex(tex: Path) -> Path:
    """Compile ``tex`` in its folder (nonstop, halting on the first error); the PDF's path.

    Raises a UserError without pdflatex, or naming the first LaTeX error and the log when it fails.
    """
    if not pdflatex_available():
        raise UserError(NO_PDFLATEX)
    command = [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", tex.name]
    try:
        result = subprocess.run(
            command, cwd=tex.parent, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"pdflatex {tex} ran past {TIMEOUT_S} s; see {tex.with_suffix('.log')}") from None
    pdf = tex.with_suffix(".pdf")
    if result.returncode != 0 or not pdf.is_file():
        raise UserError(
            f"pdflatex failed on {tex}: {first_error(result.stdout)} (log: {tex.with_suffix('.log')})"
        )
    return pdf


def first_error(log: str) -> str:
    """The first ``! ...`` error line of a LaTeX log, or its last non-empty line."""
    match = re.search(r"^! (.+)$", log, re.MULTILINE)
    if match:
        return match.group(1)
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def overfull_boxes(log: str) -> list[str]:
    """The ``Overfull \\hbox (Xpt too wide)`` warnings of a LaTeX log."""
    return re.findall(r"^Overfull \\hbox \(([\d.]+pt) too wide\).*$", log, re.MULTILINE)
