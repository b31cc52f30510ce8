"""Settings of the scoring pipeline: one frozen dataclass, checked where it is built."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import check
from core.packaged import PACKAGED_TINY_EN


@dataclass(frozen=True)
class SegmentConfig:
    """How words become scored units.

    Utterance mode (``window=None``): a new utterance starts after a pause of ``max_pause`` seconds,
    after sentence-final punctuation once the utterance is ``min_sentence`` long, or before it would
    pass ``max_duration``. Window mode: fixed ``window``-second windows every ``hop`` seconds (default
    half a window) over the whole recording; a window's text is the words whose middle lies in it.
    """

    max_pause: float = 2.0
    min_sentence: float = 1.0
    max_duration: float = 15.0
    window: float | None = None
    hop: float | None = None

    def __post_init__(self) -> None:
        check(self.max_pause > 0, f"max_pause must be > 0 seconds, got {self.max_pause}")
        check(self.min_sentence >= 0, f"min_sentence must be >= 0 seconds, got {self.min_sentence}")
        check(self.max_duration > 0, f"max_duration must be > 0 seconds, got {self.max_duration}")
        check(self.window is None or self.window > 0, f"--window must be > 0 seconds, got {self.window}")
        check(
            self.hop is None or (self.window is not None and 0 < self.hop <= self.window),
            f"--hop must be in (0, window] and needs --window, got {self.hop}",
        )

    @property
    def step(self) -> float:
        """Window hop in seconds (window mode only)."""
        assert self.window is not None
        return self.hop if self.hop is not None else self.window / 2


@dataclass(frozen=True)
class ScoreConfig:
    """Everything ``fine score`` needs besides the inputs and the model.

    whisper_model: a faster-whisper size name or hub id (needs a network), a local CTranslate2
    directory, or ``packaged:tiny.en`` (offline). ``threads``: CPU threads for ASR and the runner.
    """

    whisper_model: str = PACKAGED_TINY_EN
    language: str | None = "en"
    threads: int = 2
    backend: str = "auto"
    batch_size: int = 16
    segment: SegmentConfig = SegmentConfig()

    def __post_init__(self) -> None:
        check(
            bool(self.whisper_model.strip()),
            "whisper model must be a size name, directory or packaged:tiny.en",
        )
        check(1 <= self.threads <= 256, f"threads must be in [1, 256], got {self.threads}")
        check(1 <= self.batch_size <= 1024, f"batch_size must be in [1, 1024], got {self.batch_size}")
