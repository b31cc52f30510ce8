"""Qt-free pipeline: sources, streaming ASR, sessions, batch scoring, timeline writers.

The objects are push-style so ``fine score`` (files) and the live app (camera + microphone) share them.
By stage:

- model: :func:`app.pipeline.model_info.model_info` reads a model's identity and feature profile.
- media: :mod:`app.pipeline.media` decodes a recording, tracks its faces and slices it per unit.
- units: :class:`app.pipeline.segment.UtteranceSegmenter` (push ASR words as they are committed, get
  finished utterances), :func:`~app.pipeline.segment.sliding_windows` for fixed windows, and
  :mod:`app.pipeline.chunks` (a long file 30 s at a time).
- features + score: :class:`app.pipeline.scorer.Scorer`, the model's feature profile ->
  ``core.features`` extractors, plus an ``export.runtime`` runner; ``features(audio, face_rows, text)``
  and ``score(units, feats)`` give timeline rows with unimodal scores and Shapley contributions.
- outputs: :class:`app.pipeline.timeline.TimelineWriter` (rows appended to CSV and JSON, atomic),
  :mod:`app.pipeline.report` (plot and HTML report), :mod:`app.pipeline.outdir` (the output folder).
- batch: :mod:`app.pipeline.inputs` (which files, their keys), :class:`app.pipeline.batch.BatchScorer`
  (files -> decode, VAD + ASR, units, Scorer, writer, report), :mod:`app.pipeline.resume`
  (``--resume``), :mod:`app.pipeline.summary` (``OUT/summary.*``), :mod:`app.pipeline.ray_scoring`
  (``--ray``); ``fine score`` is :mod:`app.pipeline.cli`.
"""
