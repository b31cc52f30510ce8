"""Discovery stage: the files to score, their output keys, and why an input is not scored at all."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv", ".m4v", ".ts", ".wmv")
MEDIA_EXTS = AUDIO_EXTS + VIDEO_EXTS


def find_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Files to score with their output keys. Directories are searched recursively; nothing found is
    dropped silently: non-media files, dangling links, hidden files and hidden folders (not entered)
    are listed too, and get a ``skipped`` line in the summary. Given files are kept as they are."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += [(f, str(f.relative_to(p))) for f in _walk(p)]
        else:
            found.append((p, p.name))
    keys: set[str] = set()
    out = []
    for path, rel in found:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", rel).strip("_") or "input"
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}-{n}"
        keys.add(key)
        out.append((path, key))
    return out


def _walk(root: Path) -> list[Path]:
    """Every file under ``root`` (links to files and dangling links included, linked folders not
    entered), and hidden files and folders as single entries, sorted."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        out += [here / d for d in dirs if d.startswith(".") or (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [here / f for f in files]
    return sorted(out)


def skip_reason(path: Path) -> str:
    """Why ``path`` is not scored at all ("" when it is scored)."""
    if path.is_symlink() and not path.exists():
        return f"dangling link (to {os.readlink(path)}): its target does not exist"
    if path.is_symlink() and path.is_dir():
        return "link to a folder: not searched (pass the folder itself to score its files)"
    if path.is_dir() and path.name.startswith("."):
        return "hidden folder (its name starts with '.'): not searched; rename it to score its files"
    if path.name.startswith("."):
        return "hidden file (its name starts with '.'): not scored; rename it to score it"
    if path.suffix.lower() not in MEDIA_EXTS:
        return _unsupported(path)
    return ""


def _unsupported(path: Path) -> str:
    kind = path.suffix.lower() or "no extension"
    return f"unsupported file type ({kind}): not an audio or video file"
