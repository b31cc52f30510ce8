"""``--help`` conventions shared by every ``fine`` subcommand: the help ends with examples."""

from __future__ import annotations

import argparse


def add_examples(parser: argparse.ArgumentParser, *examples: str) -> argparse.ArgumentParser:
    """End ``parser``'s help with an ``examples:`` block, one command per line (keeps the description's
    own line breaks)."""
    parser.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser
