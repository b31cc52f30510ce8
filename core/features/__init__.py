"""Feature extractors (text, audio, vision) that run the same live and offline, and their profile."""
