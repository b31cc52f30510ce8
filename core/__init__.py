"""FINE: the model, its losses, MI estimators, checkpoints and feature extractors (no Qt, no training loop)."""

__version__ = "0.1.0"
