"""The output folder of ``fine score``: one run at a time, and never a write through a planted link.

:class:`OutputLock` holds an exclusive ``flock`` on ``OUT/.fine-score.lock`` for the whole run: a
second ``fine score`` on the same ``--out`` is refused at once with one line (it would otherwise
interleave rows into the same ``timeline.csv``). The lock dies with its process, so a killed run never
leaves ``OUT`` locked. It is re-entrant within a process (the CLI and ``BatchScorer.run`` both take it).

Every file is written by :func:`core.artifact.atomic_write_bytes` (a temporary file in the same folder,
then ``os.replace``): a rename replaces a link that sits where the file goes and never writes through
it. A per-input folder that is a link (or not a folder) is refused: that input fails with a reason.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from core.errors import FineError, InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".fine-score.lock"
# what one input writes into OUT/<key>/
CSV_NAME, JSON_NAME, PNG_NAME, HTML_NAME = "timeline.csv", "timeline.json", "plot.png", "report.html"
_held: dict[str, tuple[int, int]] = {}  # resolved OUT -> (fd, depth), locks this process holds
_held_guard = threading.Lock()


class OutputBusyError(FineError):
    """Another process is scoring into the same output folder."""


class OutputLock:
    """Exclusive use of an output folder for one run (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._key = ""

    def __enter__(self) -> OutputLock:
        self.out.mkdir(parents=True, exist_ok=True)
        self._key = str(self.out.resolve())
        with _held_guard:
            if self._key in _held:
                fd, depth = _held[self._key]
                _held[self._key] = (fd, depth + 1)
                return self
            _held[self._key] = (self._acquire(), 1)
        return self

    def _acquire(self) -> int:
        path = self.out / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if path.is_symlink():
                raise InputError(
                    f"{path}: is a link; remove it (fine score never writes through links)"
                ) from None
            raise FineError(f"{path}: cannot create the run lock ({exc.strerror or exc})") from None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, say so
            log.warning("no file locking on this platform: do not run two fine score on %s at once", self.out)
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputBusyError(
                f"{self.out}: another fine score run (pid {other}) is writing into this folder; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with _held_guard:
            fd, depth = _held[self._key]
            if depth > 1:
                _held[self._key] = (fd, depth - 1)
                return
            del _held[self._key]
        os.close(fd)  # releases the flock; the file stays (deleting it would race a waiting run)


def check_writable(out: Path) -> None:
    """Fail now, in one line, if ``out`` cannot take files (a probe through mkstemp: never a link)."""
    fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.", suffix=".tmp")
    os.close(fd)
    os.unlink(probe)


def input_folder(target: Path) -> None:
    """Create the per-input folder ``target``; refuse one that is a link or not a folder."""
    if target.is_symlink():
        raise InputError(
            f"output folder {target} is a link; fine score never writes through links: remove it"
        )
    if target.exists() and not target.is_dir():
        raise InputError(f"output folder {target} exists and is not a folder: remove or rename it")
    target.mkdir(parents=True, exist_ok=True)


def sweep_stale_temps(out: Path) -> int:
    """Delete the hidden ``.NAME.XXXX.tmp`` files that :func:`core.artifact.atomic_write_bytes` leaves
    when a run is killed mid-write (SIGKILL cannot be caught). The finished files they were meant to
    replace are intact; the temporaries are never read. Linked folders are not entered. Call it only
    while holding the :class:`OutputLock` (another run's temporaries are live). Returns how many."""
    if not out.is_dir():
        return 0
    n = 0
    for folder, _dirs, files in os.walk(out, followlinks=False):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                Path(folder, name).unlink(missing_ok=True)  # a link is removed, never followed
                n += 1
    return n
