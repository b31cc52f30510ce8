"""``fine app``: the desktop window. Importing this module does not import Qt, so a missing PySide6 is
one line naming the extra to install, not a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.clihelp import add_backend, add_model, cli_main, command_parser
from core.errors import InputError, MissingDependencyError


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine app",
        "live sentiment from a camera + microphone or a file",
        "fine app",
        "fine app interview.mp4",
        "fine app --model hf:org/name",
    )
    p.add_argument("file", nargs="?", type=Path, default=None, help="a media file to replay at start")
    add_model(p)
    p.add_argument("--fast", action="store_true", help="replay FILE as fast as possible (default: real time)")
    add_backend(p)
    return p


def require_qt() -> None:
    try:
        import pyqtgraph  # noqa: F401
        import PySide6  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the desktop app needs PySide6 and pyqtgraph ({exc}): pip install 'fine-msa[gui]'"
        ) from None


def require_display() -> None:
    """Qt aborts the process (no exception) when it cannot open a display: say so in one line first."""
    if sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError(
                "no display (DISPLAY is not set): run it on a desktop or under xvfb-run, "
                "or use 'fine live --headless' for JSON lines"
            )


def run(args: argparse.Namespace) -> int:
    if args.file is not None and not args.file.exists():
        print(f"fine app: {args.file}: no such file", file=sys.stderr)
        return 2
    require_qt()
    require_display()
    from app.qt.window import run_app

    return run_app(args)


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine app", parser(), run, argv, quiet_hub=True)
