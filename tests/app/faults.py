"""Fault-injecting sources for the live tests: a real file source that breaks like an unplugged device."""

from __future__ import annotations

import threading

import numpy as np

from app.live.sources import AudioSource, SessionClock, SourceError, VideoFrame, VideoSource


class UnpluggedVideo(VideoSource):
    """Frames of ``inner`` until stream time ``fail_at``, then ``read`` raises as a camera unplugged
    mid-session does; the next ``down_for`` reopen attempts fail, after that it works again."""

    def __init__(self, inner: VideoSource, fail_at: float, down_for: int = 10**6) -> None:
        self.inner, self.fail_at, self.down_for = inner, fail_at, down_for
        self.name = "unplugged camera"
        self.failed = False
        self.reopen_attempts = 0
        self.failed_at: float | None = None  # stream time of the failure
        self.back_at: float | None = None  # stream time of the successful reopen
        self._clock: SessionClock | None = None

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        if self.failed:
            self.reopen_attempts += 1
            if self.reopen_attempts <= self.down_for:
                raise SourceError(f"{self.name}: cannot be opened (device gone)")
            self.back_at = clock.now()
        self._clock = clock
        self.inner.open(clock, stop)

    def read(self, timeout: float) -> VideoFrame | None:
        frame = self.inner.read(timeout)
        if frame is not None and not self.failed and frame.time >= self.fail_at:
            self.failed = True
            self.failed_at = self._clock.now() if self._clock is not None else frame.time
            raise OSError(f"{self.name}: device disconnected")
        return frame

    def close(self) -> None:
        self.inner.close()


class DeadMicrophone(AudioSource):
    """A microphone that opens and then never delivers a sample (a stalled device)."""

    name = "dead microphone"

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        self._stop = stop

    def read(self, timeout: float) -> np.ndarray | None:
        self._stop.wait(timeout)
        return None
