"""Files shipped inside the package: the default model and the demo clip (see each folder's notes)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS / "default_model"  # rebuilt by `fine build-default` (training/default_model.py)
DEMO_CLIP = ASSETS / "demo" / "demo.mp4"  # attribution: demo/SOURCES.md


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """``--model``: a folder (artifact, .onnx or .engine), ``default`` (also when not given) or a Hugging Face
    id ``hf:ORG/NAME[@REV]`` (downloaded once into the fine cache); a one-line InputError otherwise.

    Every command and the live app resolve their model here (see :mod:`app.models`)."""
    from app.models import resolve

    return resolve(model)
