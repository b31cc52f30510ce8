"""Exceptions that carry a one-line, user-facing message (CLI entry points print them without a traceback)."""


class FineError(Exception):
    """Base for errors whose message names the bad input and the fix."""


class MissingDependencyError(FineError, RuntimeError):
    """An optional package is not installed; the message says what to pip install."""


class InputError(FineError, ValueError):
    """A user-supplied file, path or value is unusable; the message names it and says what to do."""
