"""All three extractors over one recorded clip (offline), and the profile they produce together.

A missing track or a silent/faceless recording is an *absent* modality, not an error; a file that
cannot be read at all raises :class:`core.errors.InputError` with one line naming it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.features.audio import AudioFeatureConfig, AudioFeatureExtractor
from core.features.decode import decode_audio, probe
from core.features.profile import FeatureProfile, ModalityProfile
from core.features.text import TextFeatureConfig, TextFeatureExtractor, Transcript
from core.features.transcribe import Transcriber
from core.features.vision import (
    EXPRESSION_VERSION,
    GEOMETRY_VERSION,
    VisionFeatureConfig,
    VisionFeatureExtractor,
)
from core.features.voice import NAME as VOICE_NAME
from core.features.voice import VoiceFeatureConfig, VoiceFeatureExtractor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractorConfig:
    """audio: the hand-made log-mel + prosody features (:class:`AudioFeatureConfig`) or Whisper-encoder
    voice features (:class:`VoiceFeatureConfig`, the default model's since profile v3)."""

    audio: AudioFeatureConfig | VoiceFeatureConfig = field(default_factory=AudioFeatureConfig)
    vision: VisionFeatureConfig = field(default_factory=VisionFeatureConfig)
    text: TextFeatureConfig = field(default_factory=TextFeatureConfig)

    @classmethod
    def from_profile(
        cls, profile: FeatureProfile | dict[str, Any], model_dir: str | os.PathLike[str] | None = None
    ) -> ExtractorConfig:
        """Extractor settings that reproduce a model's feature profile (check with ``check_profile``).
        ``model_dir``: where the model's own files are (a text adapter, ``core.text_adapter``)."""
        if isinstance(profile, dict):
            profile = FeatureProfile.from_dict(profile)
        audio: AudioFeatureConfig | VoiceFeatureConfig = AudioFeatureConfig()
        vision, text = VisionFeatureConfig(), TextFeatureConfig()
        if profile.audio is not None and profile.audio.name == VOICE_NAME:
            audio = voice_config(profile.audio.options)
        elif profile.audio is not None:
            audio = handmade_config(profile.audio)
        if profile.vision is not None:
            vision = VisionFeatureConfig(
                fps=profile.vision.frame_rate or vision.fps,
                max_faces=int(profile.vision.options.get("max_faces", vision.max_faces)),
                expression=profile.vision.version != GEOMETRY_VERSION,  # v1 models: geometry only
                geometry=profile.vision.version != EXPRESSION_VERSION,  # v3 models: the encoder only
            )
        if profile.text is not None:
            o = profile.text.options
            adapter = None
            if o.get("adapter"):
                from core.text_adapter import ADAPTER_FILE

                if model_dir is None:
                    raise InputError(
                        "the model's words use a text adapter: give the model directory, which holds "
                        f"{ADAPTER_FILE}"
                    )
                adapter = str(Path(model_dir) / ADAPTER_FILE)
            text = TextFeatureConfig(
                str(o.get("source", text.source)), int(o.get("max_length", text.max_length)), adapter
            )
        return cls(audio, vision, text)


# voice features by name: "whisper" = Whisper tiny.en encoder states pooled to 10 fps (core.features.voice);
# "whisper+prosody" = those + the 45 hand-made values per 0.1 s; "handmade" = the 45 values at 100 fps
VOICE_FEATURES = ("whisper", "whisper+prosody", "handmade")


def voice_extractor_config(voice: str) -> AudioFeatureConfig | VoiceFeatureConfig:
    """The audio extractor config of a voice-features name (:data:`VOICE_FEATURES`)."""
    if voice not in VOICE_FEATURES:
        raise InputError(f"voice features {voice!r}: use one of {', '.join(VOICE_FEATURES)}")
    if voice == "handmade":
        return AudioFeatureConfig()
    return VoiceFeatureConfig(prosody=voice == "whisper+prosody")


def handmade_config(profile: ModalityProfile) -> AudioFeatureConfig:
    """The :class:`AudioFeatureConfig` of a hand-made audio profile."""
    d, o = AudioFeatureConfig(), profile.options
    sr = profile.sample_rate or d.sample_rate
    f0 = o.get("f0_range", [d.f0_min, d.f0_max])
    return AudioFeatureConfig(
        sample_rate=sr,
        frame_length=int(o.get("frame_length", d.frame_length)),
        hop_length=round(sr / (profile.frame_rate or d.frame_rate)),
        n_mels=int(o.get("n_mels", d.n_mels)),
        fmin=float(o.get("fmin", d.fmin)),
        fmax=float(o.get("fmax", d.fmax)),
        f0_min=float(f0[0]),
        f0_max=float(f0[1]),
        voicing_threshold=float(o.get("voicing_threshold", d.voicing_threshold)),
        octave_cost=float(o.get("octave_cost", d.octave_cost)),
    )


def voice_config(options: dict[str, Any]) -> VoiceFeatureConfig:
    """The :class:`VoiceFeatureConfig` of a profile's ``options``."""
    d = VoiceFeatureConfig()
    return VoiceFeatureConfig(
        model=str(options.get("model", d.model)),
        width=int(options.get("width", d.width)),
        pool=int(options.get("pool", d.pool)),
        prosody=bool(options.get("prosody", d.prosody)),
        max_seconds=float(options.get("max_seconds", d.max_seconds)),
        margin=float(options.get("margin", d.margin)),
    )


def audio_extractor(
    config: AudioFeatureConfig | VoiceFeatureConfig,
) -> AudioFeatureExtractor | VoiceFeatureExtractor:
    """The extractor a config names: both have ``config``, ``profile`` and ``extract(signal)``."""
    if isinstance(config, VoiceFeatureConfig):
        return VoiceFeatureExtractor(config)
    return AudioFeatureExtractor(config)


@dataclass
class ClipFeatures:
    """Arrays of one clip. ``None`` where a modality has no data at all; ``presence`` is what the model sees."""

    audio: np.ndarray | None  # (n_a, d_a) every frame (hand-made: also when silent)
    vision: np.ndarray | None  # (n_v, d_v) every sampled frame, zeros where no face
    vision_present: np.ndarray | None  # (n_v,) bool
    vision_times: np.ndarray | None  # (n_v,) seconds
    text: np.ndarray | None  # (t, d) token embeddings
    text_ids: np.ndarray | None  # (t,) int64
    transcript: Transcript | None
    presence: dict[str, bool]
    duration: float | None


class FeatureExtractors:
    """Text, audio and vision extractors built from one config; reused across clips (one per process)."""

    def __init__(self, config: ExtractorConfig | None = None, transcriber: Transcriber | None = None) -> None:
        self.config = config or ExtractorConfig()
        self.audio = audio_extractor(self.config.audio)
        self.vision = VisionFeatureExtractor(self.config.vision)
        self.text = TextFeatureExtractor(self.config.text)
        self.transcriber = transcriber

    @property
    def profile(self) -> FeatureProfile:
        return FeatureProfile(text=self.text.profile, audio=self.audio.profile, vision=self.vision.profile)

    def extract_clip(self, path: str | os.PathLike[str], text: str | None = None) -> ClipFeatures:
        """Features of a media file. ``text``: the transcript; ``None`` means transcribe (if a
        transcriber is set) or leave text absent."""
        info = probe(path)
        signal = decode_audio(path, self.config.audio.sample_rate) if info.has_audio else None
        audio = self.audio.extract(signal) if signal is not None else None
        vis = self.vision.extract_file(path) if info.has_video else None
        transcript = None
        if text is not None and text.strip():
            transcript = Transcript(text=text.strip())
        elif text is None and self.transcriber is not None and audio is not None and audio.present:
            assert signal is not None
            transcript = self.transcriber.transcribe(signal)
        tf = self.text.encode(transcript.text) if transcript is not None and transcript.text else None
        presence = {
            "text": tf is not None,
            "audio": audio is not None and audio.present,
            "vision": vis is not None and self.vision.is_present(vis),
        }
        return ClipFeatures(
            audio=None if audio is None else audio.features,
            vision=None if vis is None else vis.features,
            vision_present=None if vis is None else vis.present,
            vision_times=None if vis is None else vis.times,
            text=None if tf is None else tf.embeddings,
            text_ids=None if tf is None else tf.ids,
            transcript=transcript,
            presence=presence,
            duration=info.duration,
        )
