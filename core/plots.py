"""Figures as PNG bytes (reports and evaluation plots), with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
from typing import Any

from core.errors import MissingDependencyError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), or an install hint."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'fine-msa[report]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: float | None = None) -> bytes:
    """The figure rendered as PNG bytes; the figure is closed."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        pyplot().close(fig)
