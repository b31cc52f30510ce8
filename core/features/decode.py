"""Decoding media files with PyAV: audio to 16 kHz mono float32, video to RGB frames at a chosen rate.

Every failure that is the file's fault (missing, unreadable, corrupt) is an :class:`InputError` with a
one-line message naming the file; a file without an audio or a video track is not an error here: the
caller marks that modality absent (:func:`probe` says which tracks exist).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, optional_import

log = logging.getLogger(__name__)


def require_av() -> Any:
    return optional_import("av", "decoding audio/video files needs PyAV: pip install 'fine-msa[features]'")


def check_readable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise a one-line InputError saying why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a media file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied (cannot read the file)")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    return p


def _open(path: str | os.PathLike[str]) -> Any:
    av = require_av()
    p = check_readable(path)
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(
            f"{p}: cannot open as audio/video ({_reason(exc)}); the file may be corrupt"
        ) from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0]


@dataclass(frozen=True)
class MediaInfo:
    path: str
    has_audio: bool
    has_video: bool
    duration: float | None  # seconds, None when the container does not say
    width: int = 0
    height: int = 0
    fps: float | None = None


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Which tracks a file has (no decoding)."""
    with _open(path) as container:
        v = container.streams.video[0] if container.streams.video else None
        duration = float(container.duration) / 1e6 if container.duration else None
        rate = float(v.average_rate) if v is not None and v.average_rate else None
        return MediaInfo(
            path=str(path),
            has_audio=bool(container.streams.audio),
            has_video=v is not None,
            duration=duration,
            width=int(v.codec_context.width) if v is not None else 0,
            height=int(v.codec_context.height) if v is not None else 0,
            fps=rate,
        )


def decode_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray | None:
    """Decode the first audio track to mono float32 at ``sample_rate``; ``None`` if there is no audio track."""
    audio, error = decode_audio_partial(path, sample_rate)
    if error is not None:
        raise InputError(f"{path}: audio track cannot be decoded ({error})")
    return audio


def decode_audio_partial(
    path: str | os.PathLike[str], sample_rate: int = 16000
) -> tuple[np.ndarray | None, str | None]:
    """As :func:`decode_audio`, but a file whose data breaks off (a truncated download, a damaged tail)
    gives the samples decoded before the break and the reason it stopped; ``(None, None)`` without an
    audio track. An error before any sample decodes raises the one-line InputError."""
    av = require_av()
    with _open(path) as container:
        if not container.streams.audio:
            return None, None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        error = None
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler follow samples, not (possibly broken) timestamps
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as exc:
            if not any(c.size for c in chunks):
                raise InputError(f"{path}: audio track cannot be decoded ({_reason(exc)})") from None
            error = _reason(exc)
    if not chunks:
        return np.zeros(0, dtype=np.float32), error
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32), error


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """Like :func:`decode_audio` but a file without audio is an error (for audio-only inputs)."""
    audio = decode_audio(path, sample_rate)
    if audio is None:
        raise InputError(f"{path}: has no audio track")
    return audio


class FrameSampler:
    """Keeps a frame when its timestamp reaches the next tick of a ``1/fps`` grid (``fps=None``: every frame).

    Offline decoding and live capture both use it, so a camera and a file at any native frame rate give
    frames on the same grid.
    """

    def __init__(self, fps: float | None) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0 or None, got {fps}")
        self.step = 1.0 / fps if fps else 0.0
        self.next_tick = 0.0

    def take(self, t: float) -> bool:
        if not self.step:
            return True
        if t + 1e-6 < self.next_tick:
            return False
        while self.next_tick <= t + 1e-6:
            self.next_tick += self.step
        return True

    def reset(self, start: float = 0.0) -> None:
        self.next_tick = start


@dataclass(frozen=True)
class Frame:
    time: float  # seconds from the start of the stream
    rgb: np.ndarray  # (h, w, 3) uint8


def iter_video_frames(
    path: str | os.PathLike[str], fps: float | None = None, max_frames: int | None = None
) -> Iterator[Frame]:
    """Yield RGB frames of the first video track, resampled to ``fps`` (``None``: every frame).

    Frames are picked by :class:`FrameSampler` (the live camera path uses the same one), so the rate is
    the same whatever the file's own frame rate. Yields nothing when there is no video track.
    """
    av = require_av()
    with _open(path) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        start = stream.start_time or 0
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        sampler, n_out, index = FrameSampler(fps), 0, -1
        try:
            for vframe in container.decode(stream):
                index += 1
                if vframe.pts is not None and base is not None:
                    t = float((vframe.pts - start) * base)
                else:
                    t = index / rate
                if not sampler.take(t):
                    continue
                yield Frame(time=t, rgb=vframe.to_ndarray(format="rgb24"))
                n_out += 1
                if max_frames is not None and n_out >= max_frames:
                    return
        except (av.error.FFmpegError, ValueError) as exc:
            raise InputError(f"{path}: video track cannot be decoded ({_reason(exc)})") from None
