"""Media stage: a recording decoded (audio at the extractors' rate), its faces tracked, sliced by unit.

``fine score`` decodes a file once (:func:`decode`), tracks faces through the whole video
(:func:`track_faces`, which may run while ASR works on the audio), then gives each unit its slice
(:meth:`Media.slice`) to the :class:`~app.pipeline.scorer.Scorer`. The live app feeds the Scorer the
same pieces from its buffers instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.features.decode import MediaInfo, decode_audio_partial, probe
from core.features.transcribe import ASR_RATE
from core.features.vision import VisionFeatureExtractor, VisionFeatures


@dataclass
class Media:
    """A decoded recording: audio at the extractor's rate and face features of the whole video."""

    path: Path
    info: MediaInfo
    audio: np.ndarray | None  # (n,) float32 mono, None without an audio track
    vision: VisionFeatures | None  # None without a video track (or before track_faces)
    sample_rate: int
    fps: float
    partial: str | None = None  # why decoding stopped early (the samples before the break are kept)

    @property
    def duration(self) -> float:
        """Seconds that could be decoded (a cut-off file declares more: see :attr:`truncated`)."""
        lengths = [0.0]
        if self.audio is not None:
            lengths.append(self.audio.shape[0] / self.sample_rate)
        if self.vision is not None and self.vision.times.size:
            lengths.append(float(self.vision.times[-1]) + 1.0 / self.fps)
        return max(lengths)

    @property
    def truncated(self) -> bool:
        """Much less could be decoded than the container declares: a cut-off or damaged file."""
        declared = self.info.duration
        return declared is not None and self.duration < 0.9 * declared - 0.5

    @property
    def has_face(self) -> bool:
        return self.vision is not None and bool(self.vision.present.any())

    def slice(self, start: float, end: float) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The audio samples of ``[start, end)`` and the face features of its frames that have a face."""
        audio = None
        if self.audio is not None:
            s0, s1 = (round(t * self.sample_rate) for t in (start, end))
            audio = self.audio[max(0, s0) : max(0, s1)]
        vision_rows = None
        if self.vision is not None:
            t = self.vision.times
            keep = (t >= start) & (t < end) & self.vision.present
            vision_rows = self.vision.features[keep]
        return audio, vision_rows


def decode(path: str | os.PathLike[str], sample_rate: int, fps: float) -> Media:
    """Probe ``path`` and decode its audio at ``sample_rate`` (InputError when it cannot be read); faces
    come from :func:`track_faces` (sampled at ``fps``), which may run while ASR works on the audio."""
    info = probe(path)
    if not info.has_audio and not info.has_video:
        raise InputError(f"{path}: has neither an audio nor a video track")
    audio, partial = decode_audio_partial(path, sample_rate) if info.has_audio else (None, None)
    return Media(Path(path), info, audio, None, sample_rate, fps, partial)


def track_faces(media: Media, vision: VisionFeatureExtractor) -> Media:
    """Face features of every sampled frame of the video track (none without one)."""
    if media.info.has_video:
        media.vision = vision.extract_file(media.path)
    if media.duration <= 0:
        raise InputError(f"{media.path}: contains no audio samples and no video frames")
    return media


def asr_audio(media: Media) -> np.ndarray | None:
    """The audio at Whisper's 16 kHz (the decoded samples when the extractor's rate is the same)."""
    if media.audio is None or not media.audio.size:
        return None
    if media.sample_rate == ASR_RATE:
        return media.audio
    return decode_audio_partial(media.path, ASR_RATE)[0]


def media_notes(media: Media) -> list[str]:
    """What a reader of the timeline should know about the recording (cut off, no track, silent, no face)."""
    notes = []
    if media.partial:
        notes.append(
            f"partial: decoding stopped after {media.duration:.1f} s ({media.partial}); "
            "what decoded is scored, the rest of the file is not"
        )
    elif media.truncated:
        notes.append(
            f"only {media.duration:.1f} s of the {media.info.duration:.1f} s the file declares could be "
            "decoded: it may be truncated"
        )
    if media.audio is None:
        notes.append("no audio track: voice and words absent")
    elif not media.audio.size or float(np.sqrt(np.mean(np.square(media.audio)))) < 10 ** (-50 / 20):
        notes.append("silent audio")
    if media.vision is None:
        notes.append("no video track: face absent")
    elif not media.has_face:
        notes.append("no face found: face absent")
    return notes
