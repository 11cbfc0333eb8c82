"""The parameter types every command's options and arguments use: what a user types is checked here, at the
edge, with click's one-line usage error (exit 2), before anything is imported, stored or started.

Integers carry ranges (a job id fits SQLite's INTEGER, a seed numpy's seed, a port 1-65535), fractions are
open intervals, names are non-empty, folders and files are checked for what they must be.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

INT64_MAX = 2**63 - 1  # SQLite INTEGER
SEED_MAX = 2**32 - 1  # numpy / torch seeds

FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)  # a share strictly between 0 and 1
COUNT = click.IntRange(1, 1_000_000)  # trials, rounds, epochs, slots, processes: at least one
NON_NEGATIVE = click.IntRange(0, 1_000_000)  # retries
JOB_ID = click.IntRange(1, INT64_MAX)
PRIORITY = click.IntRange(-INT64_MAX, INT64_MAX)
SEED = click.IntRange(0, SEED_MAX)
PORT = click.IntRange(1, 65535)
POSITIVE = click.FloatRange(0, None, min_open=True)  # minutes, megabytes
NON_NEGATIVE_FLOAT = click.FloatRange(0, None)
FOLDER = click.Path(file_okay=False, path_type=Path)  # written into: may not exist yet, must not be a file
FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)  # read: must exist


class Name(click.ParamType):
    """A non-empty name without control characters (study names, experiments, hosts), stripped."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not text:
            self.fail("expected a name, got an empty one", param, ctx)
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            self.fail(f"{text!r} contains control characters", param, ctx)
        return text


NAME = Name()


class Host(click.ParamType):
    """An address to bind to: a host name or an IPv4 / IPv6 address, checked by its form."""

    name = "host"
    PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]{2,45}\]?")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = NAME.convert(value, param, ctx)
        if not self.PATTERN.fullmatch(text):
            self.fail(f"{text!r}: expected a host name or an IP address, e.g. 127.0.0.1", param, ctx)
        return text.strip("[]")


HOST = Host()


class Storage(click.ParamType):
    """An Optuna storage URL (checked by :func:`reidbench.sweeps.storage.check_storage`, without Optuna)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from reidbench.errors import UserError
        from reidbench.sweeps.storage import check_storage

        try:
            return check_storage(str(value))
        except UserError as exc:
            self.fail(str(exc).removeprefix(f"--storage {str(value)!r}: "), param, ctx)


STORAGE = Storage()


class Device(click.ParamType):
    """A device name torch can parse (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...), checked by its
    form only: whether the device exists is for the machine the run lands on (a GPU node, a Slurm job)."""

    name = "device"
    PATTERN = re.compile(r"auto|cpu|mps|(cuda|xpu|hip)(:\d{1,4})?")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not self.PATTERN.fullmatch(text):
            self.fail(f"{text!r}: expected auto, cpu, mps, cuda or cuda:N (N the GPU index)", param, ctx)
        return text


DEVICE = Device()
