"""Engine callbacks (called from worker threads) -> Qt signals (delivered in the GUI thread)."""

from __future__ import annotations

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
            on_row=self.row.emit,
            on_live=self.live.emit,
            on_transcript=self.transcript.emit,
            on_error=self.error.emit,
            on_finished=self.finished.emit,
        )
