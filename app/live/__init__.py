"""The Qt-free live engine: sources, ring buffers, supervised workers and the live session.

The desktop app (:mod:`app.qt`) and ``fine live --headless`` drive the same :class:`LiveSession`; it
scores through the same objects as ``fine score`` (:class:`app.pipeline.scorer.Scorer`, the
:class:`core.features.transcribe.Transcriber` and :class:`app.pipeline.segment.UtteranceSegmenter`).
"""
