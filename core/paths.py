"""The one cache directory of fine-msa: engines, downloaded models, decoded data sets, feature corpora.

``$FINE_CACHE_DIR`` if set, else the platform's user cache directory for ``fine`` (platformdirs:
``~/.cache/fine`` on Linux, honouring ``$XDG_CACHE_HOME``; ``~/Library/Caches/fine`` on macOS;
``%LOCALAPPDATA%\\fine\\Cache`` on Windows). Everything under it can be deleted; it is rebuilt on use."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "fine"


def cache_root() -> Path:
    explicit = os.environ.get("FINE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    try:
        import platformdirs
    except ImportError:  # a core dependency; only a partial install lacks it (the Linux convention then)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / APP_NAME
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def cache_dir(*parts: str) -> Path:
    """A folder under :func:`cache_root` (not created here: the first writer creates it)."""
    return cache_root().joinpath(*parts)
