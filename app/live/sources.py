"""Where live audio and video come from: a camera (OpenCV), a microphone (sounddevice) or a file replayed
at real-time speed or as fast as the pipeline goes.

A source is opened, read until it ends or fails, and closed; the session reopens a failed source with
backoff (a camera unplugged and plugged back in). ``read`` returns ``None`` when nothing arrived within
the timeout, raises :class:`SourceEnded` at the end of a file and anything else on failure.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import FineError, MissingDependencyError, optional_import
from core.features.decode import Frame, decode_audio, iter_video_frames, probe

log = logging.getLogger(__name__)


class SourceEnded(Exception):
    """A finite source (a file) has nothing more to give."""


class SourceError(FineError):
    """A device cannot be opened or stopped delivering; the message names it."""


class SessionClock:
    """Stream time of a session: seconds since :meth:`start`. ``realtime=False`` never sleeps."""

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self._t0 = time.monotonic()

    def start(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def wait_until(self, t: float, stop: threading.Event) -> bool:
        """Sleep until stream time ``t`` (real time only); False when ``stop`` was set meanwhile."""
        if self.realtime:
            delay = t - self.now()
            if delay > 0:
                return not stop.wait(delay)
        return not stop.is_set()


@dataclass(frozen=True)
class VideoFrame:
    time: float  # stream seconds
    rgb: np.ndarray  # (h, w, 3) uint8


class VideoSource(ABC):
    name: str = "video"

    @abstractmethod
    def open(self, clock: SessionClock, stop: threading.Event) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> VideoFrame | None: ...

    def close(self) -> None:  # noqa: B027 - optional for sources without resources
        pass


class AudioSource(ABC):
    name: str = "audio"
    sample_rate: int = 16000

    @abstractmethod
    def open(self, clock: SessionClock, stop: threading.Event) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> np.ndarray | None: ...

    def close(self) -> None:  # noqa: B027
        pass


# ------------------------------------------------------------------------------------------ files
class FileVideoSource(VideoSource):
    """Every frame of a file's video track, released at its timestamp (real time) or at once (fast).
    Reopened after a failure it resumes where it was (fast) or at the clock's time (real time)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self._frames: Iterator[Frame] | None = None
        self._last = -1.0
        self._clock: SessionClock | None = None
        self._stop = threading.Event()

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        self._clock, self._stop = clock, stop
        self._frames = iter_video_frames(self.path)

    def read(self, timeout: float) -> VideoFrame | None:
        assert self._frames is not None and self._clock is not None, "open() first"
        for frame in self._frames:
            if frame.time <= self._last:
                continue  # reopened after a failure: already delivered
            if self._clock.realtime and frame.time < self._clock.now() - 0.2:
                continue  # stale: we fell behind the clock (or resumed later); drop it
            if not self._clock.wait_until(frame.time, self._stop):
                return None
            self._last = frame.time
            return VideoFrame(frame.time, frame.rgb)
        raise SourceEnded(self.name)

    def close(self) -> None:
        if self._frames is not None and hasattr(self._frames, "close"):
            self._frames.close()  # type: ignore[attr-defined]
        self._frames = None


class FileAudioSource(AudioSource):
    """A file's audio track in chunks, released at their end time (real time) or at once (fast)."""

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = 16000, chunk: float = 0.02) -> None:
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self.sample_rate = sample_rate
        self._chunk = chunk
        self._audio: np.ndarray | None = None
        self._pos = 0
        self._clock: SessionClock | None = None
        self._stop = threading.Event()

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        self._clock, self._stop = clock, stop
        if self._audio is None:
            audio = decode_audio(self.path, self.sample_rate)
            self._audio = audio if audio is not None else np.zeros(0, dtype=np.float32)
        if clock.realtime:  # resume at the clock's time, as a device would
            self._pos = max(self._pos, int(clock.now() * self.sample_rate))

    def read(self, timeout: float) -> np.ndarray | None:
        assert self._audio is not None and self._clock is not None, "open() first"
        if self._pos >= self._audio.size:
            raise SourceEnded(self.name)
        n = int(self.sample_rate * (self._chunk if self._clock.realtime else 0.5))
        end = min(self._pos + n, self._audio.size)
        if not self._clock.wait_until(end / self.sample_rate, self._stop):
            return None
        out, self._pos = self._audio[self._pos : end], end
        return out


def file_sources(
    path: str | os.PathLike[str], sample_rate: int
) -> tuple[FileVideoSource | None, FileAudioSource | None]:
    """The video and audio sources of a media file (None for a track it lacks); InputError if unreadable."""
    info = probe(path)
    video = FileVideoSource(path) if info.has_video else None
    audio = FileAudioSource(path, sample_rate) if info.has_audio else None
    return video, audio


# ------------------------------------------------------------------------------------------ devices
def _cv2() -> Any:
    return optional_import("cv2", "the camera needs OpenCV: pip install 'fine-msa[features]'")


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise MissingDependencyError(
            f"the microphone needs sounddevice and PortAudio ({exc}): pip install 'fine-msa[gui]' "
            "and install libportaudio2"
        ) from None
    return sounddevice


class CameraSource(VideoSource):
    """An OpenCV camera by index. Frames are stamped with the session clock when they arrive."""

    def __init__(self, index: int = 0, width: int = 640, height: int = 480) -> None:
        self.index, self.width, self.height = index, width, height
        self.name = f"camera {index}"
        self._cap: Any = None
        self._clock: SessionClock | None = None

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        cv2 = _cv2()
        self._clock = clock
        if sys.platform.startswith("linux") and not Path(f"/dev/video{self.index}").exists():
            raise SourceError(f"{self.name}: not connected (no /dev/video{self.index})")
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot be opened (is it connected and not used by another app?)")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap = cap

    def read(self, timeout: float) -> VideoFrame | None:
        assert self._cap is not None and self._clock is not None, "open() first"
        ok, bgr = self._cap.read()  # blocks for at most one frame interval
        if not ok or bgr is None:
            return None
        return VideoFrame(self._clock.now(), np.ascontiguousarray(bgr[:, :, ::-1]))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class MicrophoneSource(AudioSource):
    """A sounddevice input stream; its callback only copies into a bounded queue (never blocks)."""

    def __init__(
        self, device: int | str | None = None, sample_rate: int = 16000, block: float = 0.02
    ) -> None:
        self.device, self.sample_rate, self._block = device, sample_rate, block
        self.name = f"microphone {device if device is not None else '(default)'}"
        self._stream: Any = None
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=500)
        self.overflows = 0

    def _callback(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.overflows += 1

    def open(self, clock: SessionClock, stop: threading.Event) -> None:
        sd = _sounddevice()
        try:
            stream = sd.InputStream(
                device=self.device,
                channels=1,
                samplerate=self.sample_rate,
                dtype="float32",
                blocksize=int(self.sample_rate * self._block),
                callback=self._callback,
            )
            stream.start()
        except Exception as exc:  # PortAudioError, ValueError (no such device)
            raise SourceError(f"{self.name}: cannot be opened ({exc})") from None
        self._stream = stream

    def read(self, timeout: float) -> np.ndarray | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # an unplugged device may fail to stop; it is gone either way
                log.debug("closing %s failed", self.name, exc_info=True)
            self._stream = None


def list_cameras(max_index: int = 4) -> list[int]:
    """Indices of cameras that open (none on a machine without one)."""
    try:
        cv2 = _cv2()
    except MissingDependencyError:
        return []
    found = []
    for i in range(max_index):
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{i}"):
            continue  # probing a missing V4L2 node only prints warnings
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            found.append(i)
        cap.release()
    return found


def list_microphones() -> list[tuple[int, str]]:
    """(index, name) of input devices; empty without PortAudio or devices."""
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except Exception:
        return []
    return [(i, str(d["name"])) for i, d in enumerate(devices) if int(d.get("max_input_channels", 0)) > 0]
