"""Long recordings in pieces: chunk boundaries for ASR, and units that are final as chunks arrive.

``fine score`` transcribes a file chunk by chunk (about :data:`CHUNK_SECONDS` each, cut at the quietest
moment near the end of the chunk so a cut rarely splits a word), so Whisper's working memory does not
grow with the recording and rows are written while the rest is still being transcribed.
:class:`UnitStream` turns each chunk's words into the units that can no longer change: exactly the
units a whole-file pass would give (an utterance still open at a chunk's end waits for the next chunk).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from app.pipeline.config import SegmentConfig
from app.pipeline.segment import Unit, UtteranceSegmenter, sliding_windows
from core.features.text import Word

CHUNK_SECONDS = 30.0  # ASR chunk length: one Whisper window, so a chunk costs what a 30 s file costs
CUT_SEARCH = 0.25  # look for the quietest moment in the last quarter of a chunk
FRAME_SECONDS = 0.1  # loudness is compared over 100 ms frames


def chunk_bounds(
    audio: np.ndarray, rate: int, chunk_seconds: float = CHUNK_SECONDS
) -> Iterator[tuple[int, int]]:
    """Sample ranges ``[s0, s1)`` covering ``audio``: each about ``chunk_seconds`` long, ending at the
    quietest 100 ms frame of its last quarter (deterministic: the same audio gives the same cuts)."""
    n, size = audio.shape[0], max(1, round(chunk_seconds * rate))
    frame = max(1, round(FRAME_SECONDS * rate))
    s0 = 0
    while s0 < n:
        s1 = s0 + size
        if s1 >= n or n - s1 < size // 4:  # the rest, or a short tail joined to this chunk
            yield s0, n
            return
        lo = s1 - int(size * CUT_SEARCH)
        frames = audio[lo:s1][: (s1 - lo) // frame * frame].reshape(-1, frame)
        if frames.size:
            quiet = int(np.argmin(np.square(frames, dtype=np.float64).mean(axis=1)))
            s1 = lo + quiet * frame + frame // 2
        yield s0, s1
        s0 = s1


@dataclass
class UnitStream:
    """Push each chunk's words with the time the chunk ends; get the units that are final.

    Utterance mode: an utterance is final once the next word starts a new one, or once the chunk ends
    ``max_pause`` after its last word. Window mode (``duration`` of the whole recording): a window is
    final once the chunks cover its end.
    """

    config: SegmentConfig
    duration: float
    _segmenter: UtteranceSegmenter = field(init=False)
    _windows: list[Unit] = field(init=False, default_factory=list)
    _words: list[Word] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._segmenter = UtteranceSegmenter(self.config)
        if self.config.window is not None:
            self._windows = sliding_windows(self.duration, (), self.config)

    def push(self, words: Sequence[Word], until: float) -> list[Unit]:
        """``words`` of the audio up to ``until`` seconds (in time order, after earlier pushes)."""
        if self.config.window is not None:
            self._words += words
            return self._take_windows(lambda w: w.end <= until + 1e-6)
        done = self._segmenter.push(words)
        pending = self._segmenter.pending
        if pending and until - max(w.end for w in pending) >= self.config.max_pause:
            done += self._segmenter.flush()  # no later word can join it: the next starts after `until`
        return done

    def flush(self) -> list[Unit]:
        if self.config.window is not None:
            return self._take_windows(lambda w: True)
        return self._segmenter.flush()

    def _take_windows(self, final: object) -> list[Unit]:
        assert callable(final)
        done: list[Unit] = []
        while self._windows and final(self._windows[0]):
            w = self._windows.pop(0)
            inside = tuple(x for x in self._words if w.start <= (x.start + x.end) / 2 < w.end)
            done.append(replace(w, words=inside))
        if self._windows:  # words before the next window's start are needed by no later window
            first = self._windows[0].start
            self._words = [x for x in self._words if (x.start + x.end) / 2 >= first]
        return done
