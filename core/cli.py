"""``fine info MODEL``: print a model artifact's card, config and feature profile."""

from __future__ import annotations

import argparse
import json
import sys

from core.artifact import ArtifactError, read_config
from core.clihelp import add_examples


def info_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fine info", description=__doc__)
    add_examples(p, "fine info app/assets/default_model", "fine info runs/mosi/best")
    p.add_argument("model", help="model directory (config.json + model.safetensors)")
    args = p.parse_args(argv)
    try:
        meta = read_config(args.model)
    except ArtifactError as exc:
        print(f"fine info: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2))
    return 0
