"""The process of one queued job: ``python -m reidbench.cli.child RESULT.json reidbench-args...``.

It runs the reidbench command line in this process and writes RESULT.json when it ends: the exit code
and, when the command raised, the exception as ``TypeName: message`` (the form the runner tags failed
MLflow runs with). SIGTERM (the scheduler's cancel) becomes a KeyboardInterrupt, so the runner ends the
MLflow run KILLED before the process exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

__all__ = ["main"]


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: list[str]) -> tuple[int, str | None]:
    """Run ``reidbench ARGS``; (exit code, error or None)."""
    import click

    from reidbench import cli
    from reidbench.errors import UserError

    try:
        cli.cli.main(args, prog_name="reidbench", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code, None if code == 0 else f"exit code {code}"
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, f"UserError: {exc}"
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code, f"{type(exc).__name__}: {exc.format_message()}"
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        return 130, f"{type(exc).__name__}: {exc}"
    except BaseException as exc:
        traceback.print_exc()
        return 1, f"{type(exc).__name__}: {exc}"
    return 0, None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (also written to the result file)."""
    argv = sys.argv[1:] if argv is None else argv
    result, args = Path(argv[0]), argv[1:]
    signal.signal(signal.SIGTERM, _interrupt)
    code, error = run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps({"exit": code, "error": error, "pid": os.getpid()}))
    tmp.replace(result)
    return code


if __name__ == "__main__":
    sys.exit(main())
