"""Recording a live session as it goes: the timeline (the same incremental, atomic writer ``fine score``
uses), and optionally the audio (WAV, flushed per chunk) and the video (OpenCV writer)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.live.sources import VideoFrame
from app.pipeline.timeline import TimelineRow, TimelineWriter
from core.errors import optional_import

log = logging.getLogger(__name__)


class SessionRecorder:
    """``out/timeline.csv`` + ``out/timeline.json`` (every row fsync'ed / rewritten atomically, so a
    crash loses nothing scored), ``out/audio.wav`` and ``out/video.mp4`` when asked for."""

    def __init__(
        self,
        out: Path,
        meta: dict[str, Any],
        audio: bool = False,
        video: bool = False,
        sample_rate: int = 16000,
        fps: float = 25.0,
    ) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.timeline: TimelineWriter | None = TimelineWriter(
            out / "timeline.csv", out / "timeline.json", {**meta, "mode": "live"}
        )
        self._lock = threading.Lock()
        self._wav: Any = None
        self._video: Any = None
        self._want_video, self._fps = video, fps
        if audio:
            soundfile = optional_import(
                "soundfile", "recording audio needs soundfile: pip install 'fine-msa[features]'"
            )
            self._wav = soundfile.SoundFile(out / "audio.wav", "w", sample_rate, 1, "PCM_16")

    def on_row(self, row: TimelineRow) -> None:
        with self._lock:
            if self.timeline is not None:
                self.timeline.append([row])

    def on_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        with self._lock:
            if self._wav is not None:
                self._wav.write(np.clip(samples, -1.0, 1.0))
                self._wav.flush()

    def on_frame(self, frame: VideoFrame) -> None:
        if not self._want_video:
            return
        with self._lock:
            if self._video is None:
                import cv2

                h, w = frame.rgb.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                self._video = cv2.VideoWriter(str(self.out / "video.mp4"), fourcc, self._fps, (w, h))
            self._video.write(np.ascontiguousarray(frame.rgb[:, :, ::-1]))

    def close(self, status: str = "complete") -> None:
        with self._lock:
            if self.timeline is not None:
                self.timeline.close(status)
                self.timeline = None
            if self._wav is not None:
                self._wav.close()
                self._wav = None
            if self._video is not None:
                self._video.release()
                self._video = None
