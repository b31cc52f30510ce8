"""Qt-free pipeline: sources, streaming ASR, sessions, batch scoring, timeline writers."""
