"""``fine bench WHAT``: benchmarks that print numbers (they are never timed tests).

They live here, outside the library packages, and import what they measure: ``model`` (FINE's
parameters and forward latency, torch and onnxruntime), ``features`` (audio and vision extraction per
stage), ``runtime`` (every available runner), ``score`` (``fine score`` against transcription alone) and
``live`` (real-time replay). ``fine bench text`` is :mod:`training.text_bench` (its metrics serve the
default model's build). No library module imports this package (an import contract).
"""
