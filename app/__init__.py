"""The application layer: batch scoring, live pipeline (``app.pipeline``) and the Qt GUI (``app.qt``)."""
