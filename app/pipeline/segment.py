"""From ASR words to scored units: a push-style utterance segmenter and fixed sliding windows.

:class:`UtteranceSegmenter` is fed words as ASR commits them (a whole file's words at once offline, a
few at a time live) and returns the utterances that are complete; ``flush`` ends the stream. The live
app and ``fine score`` use the same object, so a file and a microphone are cut the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.pipeline.config import SegmentConfig
from core.features.text import Word

SENTENCE_END = (".", "?", "!")


@dataclass(frozen=True)
class Unit:
    """One scored span of the recording: an utterance or a window. Times in seconds from the start."""

    start: float
    end: float
    words: tuple[Word, ...] = ()
    kind: str = "utterance"

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words if w.word).strip()

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class UtteranceSegmenter:
    """Push words (in time order), get finished utterances. Not thread-safe: one per stream."""

    config: SegmentConfig = field(default_factory=SegmentConfig)
    _words: list[Word] = field(default_factory=list)

    def push(self, words: Iterable[Word]) -> list[Unit]:
        done: list[Unit] = []
        for w in words:
            if self._words and self._breaks_before(w):
                done.append(self._emit())
            self._words.append(w)
            if self._ends_sentence():
                done.append(self._emit())
        return done

    @property
    def pending(self) -> tuple[Word, ...]:
        """Words of the utterance in progress (not yet emitted)."""
        return tuple(self._words)

    def flush(self) -> list[Unit]:
        """End of stream: the utterance in progress, if any."""
        return [self._emit()] if self._words else []

    def reset(self) -> None:
        self._words = []

    def _breaks_before(self, w: Word) -> bool:
        last, first = self._words[-1], self._words[0]
        return w.start - last.end >= self.config.max_pause or w.end - first.start > self.config.max_duration

    def _ends_sentence(self) -> bool:
        words = self._words
        long_enough = words[-1].end - words[0].start >= self.config.min_sentence
        return long_enough and words[-1].word.endswith(SENTENCE_END)

    def _emit(self) -> Unit:
        words, self._words = tuple(self._words), []
        return Unit(start=words[0].start, end=max(w.end for w in words), words=words)


def utterances(words: Iterable[Word], config: SegmentConfig) -> list[Unit]:
    """All utterances of a finished recording."""
    seg = UtteranceSegmenter(config)
    return seg.push(words) + seg.flush()


def sliding_windows(duration: float, words: Iterable[Word], config: SegmentConfig) -> list[Unit]:
    """Windows of ``config.window`` seconds every ``config.step`` seconds covering ``[0, duration]``; the
    last one is cut at the end. A recording shorter than one window gives one window."""
    assert config.window is not None
    words = list(words)
    units, start = [], 0.0
    while True:
        end = min(start + config.window, duration)
        inside = tuple(w for w in words if start <= (w.start + w.end) / 2 < end)
        units.append(Unit(start=start, end=end, words=inside, kind="window"))
        if end >= duration - 1e-6:
            return units
        start = round(start + config.step, 6)
