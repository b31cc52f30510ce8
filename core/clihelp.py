"""What every ``fine`` subcommand shares: parsing (``--help`` and usage errors as exit codes), the
environment, one-line errors and exit codes (:func:`cli_main`), the runtime arguments (``--model``,
``--backend``, ``--threads``) and a help that ends with examples (:func:`command_parser`, :func:`add_examples`).

Exit codes: 0 success; 2 a usage error or bad input (one line on stderr names it); a command may add
its own (``fine score``: 1 when an input failed). ``--threads`` defaults to :data:`DEFAULT_THREADS` in
every command that runs the model on recordings (score, live, their benchmarks); the training commands
(train, evaluate, diagnose) leave the thread count to torch unless given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from core.errors import os_error_line, run_cli

T = TypeVar("T")

DEFAULT_THREADS = 2
BACKENDS = "auto, torch, onnxruntime-cpu, onnxruntime-cuda, tensorrt"
MODEL_HELP = "model directory or .onnx (default: the shipped default model)"


def add_examples(parser: argparse.ArgumentParser, *examples: str) -> argparse.ArgumentParser:
    """End ``parser``'s help with an ``examples:`` block, one command per line (keeps the description's
    own line breaks)."""
    parser.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def command_parser(prog: str, description: str | None, *examples: str) -> argparse.ArgumentParser:
    """A subcommand's parser whose help ends with ``examples`` (:func:`add_examples`)."""
    return add_examples(argparse.ArgumentParser(prog=prog, description=description), *examples)


def from_args(cls: Callable[..., T], args: argparse.Namespace, names: str, **values: Any) -> T:
    """``cls`` built from the parsed options ``names`` (space-separated; each option's ``dest`` is the
    field's name) plus ``values``: ``from_args(C, args, "lr seed", bf16=True)`` is
    ``C(lr=args.lr, seed=args.seed, bf16=True)``."""
    return cls(**{name: getattr(args, name) for name in names.split()}, **values)


def add_model(parser: argparse.ArgumentParser, help_: str = MODEL_HELP) -> None:
    """``--model PATH`` (default ``None``: the shipped default model)."""
    parser.add_argument("--model", type=Path, default=None, help=help_)


def add_backend(parser: argparse.ArgumentParser, help_: str = BACKENDS) -> None:
    """``--backend NAME`` (default ``auto``)."""
    parser.add_argument("--backend", default="auto", help=help_)


def add_threads(
    parser: argparse.ArgumentParser,
    what: str = "CPU threads for ASR and the model",
    default: int | None = DEFAULT_THREADS,
) -> None:
    """``--threads N``; the help states the default (:data:`DEFAULT_THREADS`, or torch's choice)."""
    shown = "torch's choice" if default is None else str(default)
    parser.add_argument("--threads", type=int, default=default, help=f"{what} (default {shown})")


def add_runtime_arguments(
    parser: argparse.ArgumentParser, model_help: str = MODEL_HELP, threads_help: str | None = None
) -> None:
    """``--model``, ``--backend`` and ``--threads`` of the commands that run a model on recordings."""
    add_model(parser, model_help)
    add_backend(parser)
    if threads_help is None:
        add_threads(parser)
    else:
        add_threads(parser, threads_help)


def exit_code(exc: SystemExit) -> int:
    """argparse's exit as a status: ``--help`` 0, a usage error (already printed) 2."""
    code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 2)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status when argparse exits (``--help``, a usage error)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exit_code(exc)


def quiet_hub_progress() -> None:
    """No per-model "Loading weights"/download bars from the Hugging Face hub: ours is the one to watch."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def cli_main(
    prog: str,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
    *,
    quiet_hub: bool = False,
    errors: tuple[type[Exception], ...] = (),
    os_line: Callable[[OSError], str] = os_error_line,
) -> int:
    """A subcommand's ``main``: parse ``argv`` (``--help``/usage errors become their exit status), then
    :func:`core.errors.run_cli` (a :class:`~core.errors.FineError`, an OSError or one of ``errors`` is
    one line on stderr and status 2)."""
    if quiet_hub:
        quiet_hub_progress()
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    return run_cli(prog, run, args, errors, os_line)
