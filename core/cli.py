"""``fine info MODEL``: print a model artifact's card, config and feature profile."""

from __future__ import annotations

import argparse
import json

from core.artifact import read_config
from core.clihelp import cli_main, command_parser


def info_main(argv: list[str] | None = None) -> int:
    p = command_parser("fine info", __doc__, "fine info app/assets/default_model", "fine info runs/mosi/best")
    p.add_argument("model", help="model directory (config.json + model.safetensors)")
    return cli_main("fine info", p, _info, argv)


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(read_config(args.model), indent=2))
    return 0
