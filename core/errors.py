"""Exceptions that carry a one-line, user-facing message (CLI entry points print them without a traceback)."""

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class FineError(Exception):
    """Base for errors whose message names the bad input and the fix."""


class MissingDependencyError(FineError, RuntimeError):
    """An optional package is not installed; the message says what to pip install."""


class InputError(FineError, ValueError):
    """A user-supplied file, path or value is unusable; the message names it and says what to do."""


def run_cli(prog: str, run: Callable[[T], int], args: T) -> int:
    """Run a subcommand body: a :class:`FineError` or a config error becomes one line on stderr and
    exit status 2, never a traceback."""
    from core.config import ConfigError  # local: core.config imports nothing from here

    try:
        return run(args)
    except (FineError, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
