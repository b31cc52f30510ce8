"""Files shipped inside the package: the default model and the demo clip (see each folder's notes)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS / "default_model"  # rebuilt by `fine build-default` (training/default_model.py)
DEMO_CLIP = ASSETS / "demo" / "demo.mp4"  # attribution: demo/SOURCES.md
