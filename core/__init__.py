"""FINE: the model, its losses, MI estimators, checkpoints and feature extractors (no Qt, no training loop).

The public Python API (``from core import ...``); names are imported on first use, so ``import core``
stays cheap. Scoring a recording and live sessions are the application's: :mod:`app` (``score_recording``,
``live_session``), which builds on this package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "core.artifact",
    "save_model": "core.artifact",
    "build_model": "core.artifact",
    "FINE": "core.model",
    "ModalityBatch": "core.batch",
    "MODALITIES": "core.config",
    "FineConfig": "core.config",
    "MoQConfig": "core.config",
    "FTREConfig": "core.config",
    "FusionConfig": "core.config",
    "LossConfig": "core.config",
    "TextEncoderConfig": "core.config",
    "FineError": "core.errors",
    "ConfigError": "core.errors",
    "InputError": "core.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
