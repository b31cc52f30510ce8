"""Files shipped inside the package: the default model and the demo clip (see each folder's notes)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS / "default_model"  # rebuilt by `fine build-default` (training/default_model.py)
DEMO_CLIP = ASSETS / "demo" / "demo.mp4"  # attribution: demo/SOURCES.md


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """``--model`` if given, else the shipped default model; a one-line InputError when neither exists.

    Every command and the live app resolve their model here."""
    from core.errors import InputError

    if model is not None:
        path = Path(model)
        if not path.exists():
            raise InputError(f"{path}: no such model; pass --model DIR (a model artifact or .onnx)")
        return path
    default = DEFAULT_MODEL
    if not (default / "config.json").exists():
        raise InputError(
            f"no --model given and the default model is not installed at {default}; pass --model DIR "
            "(a model artifact directory or an .onnx file), or rebuild it with "
            "'fine build-default --data ../shared/data --out app/assets/default_model'"
        )
    return default
