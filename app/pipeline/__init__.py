"""Qt-free pipeline: sources, streaming ASR, sessions, batch scoring, timeline writers.

The objects are push-style so ``fine score`` (files) and the live app (camera + microphone) share them:

- :class:`app.pipeline.segment.UtteranceSegmenter`: push ASR words as they are committed, get finished
  utterances; :func:`~app.pipeline.segment.sliding_windows` for fixed windows.
- :class:`app.pipeline.scorer.Scorer`: the model's feature profile -> ``core.features`` extractors,
  plus an ``export.runtime`` runner; ``features(audio, face_rows, text)`` and ``score(units, feats)``
  give timeline rows with unimodal scores and Shapley contributions.
- :class:`app.pipeline.timeline.TimelineWriter`: rows appended to CSV (fsync'ed) and JSON (atomic).
- :class:`app.pipeline.scoring.BatchScorer`: files -> decode, VAD + ASR, units, Scorer, writer,
  plot and HTML report (:mod:`app.pipeline.report`), summary; ``fine score`` is :mod:`app.pipeline.cli`.
"""
