"""The ``reidbench`` command line: parses, then calls into the reidbench package.

One module per command group (:mod:`.runs`, :mod:`.listing`, :mod:`.report`, :mod:`.zoo`, :mod:`.queue`);
this module assembles them into the :func:`cli` group and holds the console-script entry :func:`main`.
"""

from __future__ import annotations

import sys

import click
from rich.text import Text

from reidbench.cli.common import console
from reidbench.cli.info import info
from reidbench.cli.listing import datasets_group, list_
from reidbench.cli.queue import queue, serve
from reidbench.cli.report import report
from reidbench.cli.runs import ablate, prune, run, suite, tune
from reidbench.cli.zoo import eval_, zoo_group
from reidbench.errors import UserError

__all__ = ["cli", "console", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--plugins",
    metavar="MODULE[,MODULE]",
    default=None,
    help="Also load methods / datasets from these modules (dotted names on the Python path or .py files); "
    "added to $REIDBENCH_PLUGINS, so worker, Slurm and queue processes load them too.",
)
def cli(plugins: str | None) -> None:
    """reidbench: train and evaluate multimodal ReID methods under one protocol, log to MLflow."""
    if plugins:
        from reidbench.registry.plugins import add_requested

        add_requested(plugins)


for _command in (
    run,
    ablate,
    suite,
    tune,
    prune,
    list_,
    info,
    datasets_group,
    report,
    eval_,
    zoo_group,
    queue,
    serve,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point: user mistakes end in a one-line message and exit code 2."""
    try:
        cli(standalone_mode=False)
    except UserError as exc:
        console.print(Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False)  # no markup in exc
        sys.exit(getattr(exc, "exit_code", 2))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        console.print("[yellow]aborted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
