"""Console script ``reidbench`` in the checkout (``python cli.py ARGS`` == ``reidbench ARGS``).

A thin entry: the command line itself is the package :mod:`reidbench.cli`, which the installed console
script calls directly.
"""

from reidbench.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
