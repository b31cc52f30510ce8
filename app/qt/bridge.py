"""Engine callbacks (called from worker threads) -> Qt signals (delivered in the GUI thread)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.live.session import LiveEvents


class EngineBridge(QObject):
    row = Signal(object)  # TimelineRow of a committed utterance
    live = Signal(object)  # TimelineRow of the rolling score
    transcript = Signal(str, str)  # (newly committed words, tentative text)
    error = Signal(str, str)  # (stage, message)
    finished = Signal()  # a replayed file ended and everything was scored

    def events(self) -> LiveEvents:
        return LiveEvents(
            on_row=_safe(self.row),
            on_live=_safe(self.live),
            on_transcript=_safe(self.transcript),
            on_error=_safe(self.error),
            on_finished=_safe(self.finished),
        )


def _safe(signal: Any) -> Callable[..., None]:
    """Emit, unless the window is already gone (a worker finishing after the window closed)."""

    def emit(*args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # "Signal source has been deleted"
            signal.emit(*args)

    return emit
