"""The application's Python entry points: score a recording, open a live session.

Re-exported by :mod:`app` (``from app import score_recording, live_session``). Each call loads its
models (the FINE model, Whisper, FaceMesh); to score many files with models loaded once, use
``fine score`` or :class:`app.pipeline.batch.BatchScorer`.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.assets import resolve_model
from app.live.config import LiveConfig
from app.live.session import LiveEvents, LiveSession
from app.pipeline.config import ScoreConfig
from app.pipeline.timeline import TimelineRow

ModelPath = str | os.PathLike[str] | None


def score_recording(
    path: str | os.PathLike[str], model: ModelPath = None, config: ScoreConfig | None = None
) -> list[TimelineRow]:
    """Score one audio or video file, as ``fine score`` does, and return its timeline rows.

    ``model``: a model directory or ``.onnx`` (default: the shipped default model). One row per
    utterance (or per window with ``ScoreConfig(segment=SegmentConfig(window=...))``): time span,
    words, score, unimodal scores, Shapley contributions of words / voice / face, presence.
    A file that cannot be read raises :class:`core.errors.InputError` with a one-line message.
    """
    from app.pipeline.batch import BatchScorer
    from app.pipeline.scorer import Scorer

    config = config or ScoreConfig()
    scorer = Scorer(resolve_model(model), config.backend, threads=config.threads)
    try:
        job = BatchScorer(scorer, config)
        media, words = job.load(Path(path))
        return job.score_media(media, lambda rows: None, words)
    finally:
        scorer.close()


def live_session(
    source: str | os.PathLike[str] = "camera",
    model: ModelPath = None,
    config: LiveConfig | None = None,
    events: LiveEvents | None = None,
) -> LiveSession:
    """A live session (what ``fine live`` and ``fine app`` run) on the camera and microphone, or on a file.

    Call ``start()``, receive rows through ``events`` (or read ``session.rows``), then ``stop()``.
    ``LiveConfig(realtime=False)`` replays a file as fast as the pipeline goes (``wait()`` returns
    when it is all scored).
    """
    from app.live.sources import AudioSource, CameraSource, MicrophoneSource, VideoSource, file_sources
    from app.pipeline.scorer import Scorer

    config = config or LiveConfig()
    scorer = Scorer(resolve_model(model), config.backend, threads=config.threads)
    video: VideoSource | None
    audio: AudioSource | None
    if str(source) == "camera":
        video, audio = CameraSource(), MicrophoneSource(None, scorer.sample_rate)
    else:
        video, audio = file_sources(source, scorer.sample_rate)
    return LiveSession(scorer, video, audio, config, events)
