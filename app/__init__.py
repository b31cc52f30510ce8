"""The application layer: batch scoring, live pipeline (``app.pipeline``) and the Qt GUI (``app.qt``).

The public Python API of the application (``from app import ...``); names are imported on first use,
so ``import app`` stays cheap. The model, its configs and artifacts are :mod:`core`'s API.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "score_recording": "app.api",
    "live_session": "app.api",
    "ScoreConfig": "app.pipeline.config",
    "SegmentConfig": "app.pipeline.config",
    "LiveConfig": "app.live.config",
    "LiveEvents": "app.live.session",
    "LiveSession": "app.live.session",
    "TimelineRow": "app.pipeline.timeline",
    "DEFAULT_MODEL": "app.assets",
    "DEMO_CLIP": "app.assets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
