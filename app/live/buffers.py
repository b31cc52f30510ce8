"""Thread-safe buffers between capture and the workers: audio samples and face-track results.

Both index by absolute stream time, so a worker asks for "samples 16000..32000" or "face rows between
1.0 s and 2.0 s" whatever has been trimmed. Waits use condition variables (no busy-waiting).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from core.features.vision import Face


class AudioBuffer:
    """Mono float32 samples by absolute index. ``block=True`` (fast replay): a full buffer makes the
    writer wait for the reader to :meth:`trim`; ``block=False`` (real time): the oldest samples go."""

    def __init__(self, sample_rate: int, seconds: float, block: bool) -> None:
        self.sample_rate = sample_rate
        self._cap = int(sample_rate * seconds)
        self._buf = np.zeros(self._cap, dtype=np.float32)
        self._start = 0  # absolute index of _buf[0]
        self._end = 0  # absolute index one past the last sample
        self._block = block
        self._closed = False
        self.dropped = 0
        self._cond = threading.Condition()

    @property
    def end(self) -> int:
        with self._cond:
            return self._end

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def write(self, samples: np.ndarray, stop: threading.Event | None = None) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._cond:
            while self._block and self._end - self._start + x.size > self._cap:
                if stop is not None and stop.is_set():
                    return
                self._cond.wait(0.2)
            n = self._end - self._start
            if n + x.size > self._cap:  # drop the oldest (real time)
                x = x[-self._cap :]
                drop = n + x.size - self._cap
                self._buf[: n - drop] = self._buf[drop:n]
                self._start += drop
                self.dropped += drop
                n -= drop
            self._buf[n : n + x.size] = x
            self._end += x.size
            self._cond.notify_all()

    def read(self, a: int, b: int) -> np.ndarray:
        """Copy of samples ``[a, b)``, clipped to what is kept."""
        with self._cond:
            a, b = max(a, self._start), min(b, self._end)
            if b <= a:
                return np.zeros(0, dtype=np.float32)
            return self._buf[a - self._start : b - self._start].copy()

    def trim(self, before: int) -> None:
        """Forget samples before absolute index ``before``."""
        with self._cond:
            drop = min(before, self._end) - self._start
            if drop <= 0:
                return
            n = self._end - self._start
            self._buf[: n - drop] = self._buf[drop:n]
            self._start += drop
            self._cond.notify_all()

    def wait_for(self, index: int, timeout: float) -> bool:
        """Wait until ``index`` samples exist (True) or the stream closed / timeout (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._end >= index or self._closed, timeout)
            return self._end >= index

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


@dataclass(frozen=True)
class FaceResult:
    time: float
    features: np.ndarray | None  # (d_v,) or None without a face
    for_model: bool  # on the model's frame grid (others only feed the preview)
    face: Face | None
    size: tuple[int, int]  # (w, h) of the analysed frame
    expression: Expression | None = None  # the expression encoder's reading (vision profile v2)


@dataclass(frozen=True)
class Expression:
    """What the face panel shows: the top expression class, its probability and the valence in [-1, 1]."""

    label: str
    probability: float
    valence: float


class VisionTrack:
    """Face results in time order plus a watermark: the stream time up to which frames were analysed,
    or ``done`` when no more will come for now (source ended or failed)."""

    def __init__(self) -> None:
        self._rows: list[FaceResult] = []
        self._watermark = -1.0
        self._done = False
        self.latest: FaceResult | None = None
        self._cond = threading.Condition()

    def add(self, r: FaceResult) -> None:
        with self._cond:
            if r.for_model:
                self._rows.append(r)
            self.latest = r
            self._watermark = max(self._watermark, r.time)
            self._cond.notify_all()

    def mark_seen(self, t: float) -> None:
        """Frames up to ``t`` were captured and either analysed or skipped: nothing earlier is coming."""
        with self._cond:
            self._watermark = max(self._watermark, t)
            self._cond.notify_all()

    def set_done(self, done: bool) -> None:
        with self._cond:
            self._done = done
            self._cond.notify_all()

    def wait_until(self, t: float, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._watermark >= t or self._done, timeout)

    def rows(self, t0: float, t1: float) -> np.ndarray | None:
        """Features of the model-grid frames with a face in ``[t0, t1)``; None when there are none."""
        with self._cond:
            feats = [r.features for r in self._rows if t0 <= r.time < t1 and r.features is not None]
        return np.stack(feats) if feats else None

    def trim(self, before: float) -> None:
        with self._cond:
            self._rows = [r for r in self._rows if r.time >= before]
