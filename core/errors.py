"""Exceptions that carry a one-line, user-facing message (CLI entry points print them without a traceback)."""

import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class FineError(Exception):
    """Base for errors whose message names the bad input and the fix."""


class MissingDependencyError(FineError, RuntimeError):
    """An optional package is not installed; the message says what to pip install."""


class InputError(FineError, ValueError):
    """A user-supplied file, path or value is unusable; the message names it and says what to do."""


class ConfigError(FineError, ValueError):
    """A configuration value or key is invalid. The message names the field."""


def optional_import(module: str, hint: str) -> Any:
    """``importlib.import_module(module)`` of an optional dependency, or a :class:`MissingDependencyError`
    with ``hint`` (what needs it and the pip line)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(hint) from None


def check(cond: bool, msg: str, error: type[FineError] = ConfigError) -> None:
    """Raise ``error`` (a :class:`ConfigError` unless told) with ``msg`` unless ``cond`` (option and
    config validation in ``__post_init__``)."""
    if not cond:
        raise error(msg)


def check_at_least(config: object, section: str, names: str, low: float = 1) -> None:
    """:func:`check` that each of ``names`` (space-separated attributes of ``config``) is at least ``low``;
    the message names the field as ``SECTION.NAME must be >= LOW, got VALUE``."""
    for name in names.split():
        value = getattr(config, name)
        check(value >= low, f"{section}.{name} must be >= {low:g}, got {value}")


def os_error_line(exc: OSError) -> str:
    """``PATH: reason`` of a failed file operation, with what to check (one line)."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    return f"{where}: cannot write or read there ({reason}); choose another path or fix its permissions"


def run_cli(
    prog: str,
    run: Callable[[T], int],
    args: T,
    errors: tuple[type[Exception], ...] = (),
    os_line: Callable[[OSError], str] = os_error_line,
) -> int:
    """Run a subcommand body: a :class:`FineError` (config errors included), one of ``errors`` or an
    OSError (an unwritable output path, a full disk; worded by ``os_line``) becomes one line on stderr
    and exit status 2, never a traceback."""
    caught: tuple[type[Exception], ...] = (FineError, *errors)
    try:
        return run(args)
    except caught as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: {os_line(exc)}", file=sys.stderr)
        return 2
