"""Voice features from Whisper's encoder: what the speech recogniser hears, pooled to 10 frames a second.

The hand-made features of :mod:`core.features.audio` (log-mel + prosody) mostly track loudness: a model
trained on them learned the speaker's level, not the valence of the voice (EmoDB held-out speakers: a ridge
on their mean and std reaches Corr 0.39, the model 0.00-0.31). The last encoder layer of Whisper tiny.en,
the model the ASR already loads, carries more (ridge on the same clips: Corr 0.54; see docs/METHOD.md).

How a unit's audio becomes features (the same for a training clip, a batch-scoring window and a live
utterance, so training and run time see identical features):

1. the unit's own samples (16 kHz mono) are cut into pieces of at most ``max_seconds``;
2. each piece goes through Whisper's log-mel front end and encoder on a *short window*: the piece plus
   ``margin`` seconds of silence (not Whisper's 30 s; the encoder takes fewer positions, see
   :func:`core.features.transcribe.encoder_frames`), so a 3-s clip costs a 5-s encoder pass;
3. the encoder's states (50 per second, ``width`` wide) of the frames that cover the audio are averaged
   in groups of ``pool`` (10 per second with the default 5); the last group may be shorter;
4. with ``prosody`` on, the 45 hand-made values averaged over the same 0.1 s are appended.

The encoder pass is a second, short pass over the unit (not the ASR's chunk): the features then do not
depend on how the ASR cut the stream. The Whisper weights are loaded once per process and shared with the
ASR when both use the same model on one thread (:func:`core.features.transcribe.load_whisper`).

A unit is *present* when the hand-made extractor finds enough non-silent frames (the same rule as the
hand-made features), so silence is an absent voice for both kinds of model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.errors import InputError, check
from core.features.audio import AudioFeatureConfig, AudioFeatureExtractor, AudioFeatures
from core.features.profile import ModalityProfile
from core.packaged import PACKAGED_TINY_EN

log = logging.getLogger(__name__)

NAME = "whisper-encoder"
VERSION = "1"
ENCODER_RATE = 50  # Whisper encoder states per second (mel at 100/s, stride-2 convolution)
WHISPER_RATE = 16000
PROSODY_DIM = AudioFeatureConfig().dim
VOICE_THREADS = 1  # the same features whatever thread count the ASR and the runner use


@dataclass(frozen=True)
class VoiceFeatureConfig:
    """Whisper-encoder voice features.

    model: the Whisper model (``packaged:tiny.en``, a CTranslate2 folder or a faster-whisper name).
    width: the encoder's state width (384 for tiny/tiny.en); checked against the model when it loads.
    pool: encoder states averaged into one feature frame (50 / pool frames per second).
    prosody: append the 45 hand-made values (core.features.audio) averaged per feature frame.
    max_seconds: longer audio is encoded in pieces of this length (Whisper's window is 30 s).
    margin: seconds of silence after each piece in the encoder's window.
    """

    model: str = PACKAGED_TINY_EN
    width: int = 384
    pool: int = 5
    prosody: bool = False
    max_seconds: float = 28.0
    margin: float = 2.0
    sample_rate: int = WHISPER_RATE

    def __post_init__(self) -> None:
        check(isinstance(self.model, str) and self.model != "", "voice.model must be a non-empty string")
        check(self.width >= 1, f"voice.width must be >= 1, got {self.width}")
        check(1 <= self.pool <= 50, f"voice.pool must be in 1..50 encoder frames, got {self.pool}")
        check(1.0 <= self.max_seconds <= 28.0, "voice.max_seconds must be in [1, 28]")
        check(0.0 <= self.margin <= 2.0, "voice.margin must be in [0, 2]")
        check(self.sample_rate == WHISPER_RATE, f"voice.sample_rate must be {WHISPER_RATE} (Whisper's rate)")

    @property
    def frame_rate(self) -> float:
        return ENCODER_RATE / self.pool

    @property
    def dim(self) -> int:
        return self.width + (PROSODY_DIM if self.prosody else 0)


def pool_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Mean of consecutive groups of ``size`` rows; the last group may be shorter."""
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    groups = -(-n // size)
    pad = groups * size - n
    sums = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)]).reshape(groups, size, -1).sum(1)
    counts = np.full(groups, size, dtype=np.float64)
    counts[-1] = size - pad
    return (sums / counts[:, None]).astype(np.float32)


class VoiceFeatureExtractor:
    """``extract(signal) -> AudioFeatures`` of Whisper-encoder states, as :class:`AudioFeatureExtractor`.

    The Whisper model always runs on one CTranslate2 thread (:data:`VOICE_THREADS`): its int8 kernels sum
    in a different order on more threads, so features computed with the ASR's thread count would change
    in the 7th digit with ``--threads`` (a Ray worker and a local run gave scores 3e-8 apart). The copy is
    shared with an ASR that also runs on one thread. Its log-mel front end runs on one numpy BLAS thread
    for the same reason (:func:`core.features.transcribe.load_whisper`).
    """

    def __init__(self, config: VoiceFeatureConfig | None = None) -> None:
        self.config = config or VoiceFeatureConfig()
        self.prosody = AudioFeatureExtractor(AudioFeatureConfig(sample_rate=self.config.sample_rate))
        self._model = None  # faster_whisper.WhisperModel, loaded on first use

    @property
    def profile(self) -> ModalityProfile:
        cfg = self.config
        return ModalityProfile.of_config(
            NAME,
            VERSION,
            cfg,
            {
                "model": cfg.model,
                "width": cfg.width,
                "pool": cfg.pool,
                "prosody": cfg.prosody,
                "max_seconds": cfg.max_seconds,
                "margin": cfg.margin,
                "compute_type": "int8",
            },
        )

    def _whisper(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            from core.features.transcribe import load_whisper

            model = load_whisper(self.config.model, VOICE_THREADS)
            width = _encoder_width(model)
            if width != self.config.width:
                raise InputError(
                    f"voice features: {self.config.model} has {width}-d encoder states, the model expects "
                    f"{self.config.width}; use the Whisper model named in the model's feature profile"
                )
            self._model = model
        return self._model

    def warm_up(self) -> None:
        """Load Whisper and run one short pass (the first call is otherwise slower)."""
        self.encode(np.zeros(WHISPER_RATE, dtype=np.float32))

    def encode(self, signal: np.ndarray) -> np.ndarray:
        """16 kHz mono -> ``(ceil(seconds * 50), width)`` encoder states, piece by piece."""
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        piece = int(self.config.max_seconds * WHISPER_RATE)
        parts = [self._encode_piece(x[i : i + piece]) for i in range(0, x.size, piece)]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.width), dtype=np.float32)

    def _encode_piece(self, x: np.ndarray) -> np.ndarray:
        import ctranslate2

        model = self._whisper()
        seconds = x.size / WHISPER_RATE
        frames = 2 * int(np.ceil(ENCODER_RATE * (seconds + self.config.margin)))  # mel frames, even
        mel = model.feature_extractor(x, padding=frames * model.feature_extractor.hop_length)[:, :frames]
        out = model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])))
        states = np.array(out, dtype=np.float32)[0]
        return states[: int(np.ceil(seconds * ENCODER_RATE))]

    def compute(self, signal: np.ndarray, prosody: np.ndarray | None = None) -> np.ndarray:
        """Features of a signal (no presence check): pooled encoder states (+ pooled prosody)."""
        cfg = self.config
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        feats = pool_rows(self.encode(x), cfg.pool)
        if not cfg.prosody:
            return feats
        p = self.prosody.extract(x).features if prosody is None else prosody
        per = round(self.prosody.config.frame_rate / cfg.frame_rate)  # 100 fps -> 10 fps: 10
        pp = pool_rows(p, per)[: feats.shape[0]]
        if pp.shape[0] < feats.shape[0]:  # the audio ends inside a hand-made frame: repeat the last
            last = pp[-1:] if pp.shape[0] else np.zeros((1, PROSODY_DIM), dtype=np.float32)
            pp = np.concatenate([pp, np.repeat(last, feats.shape[0] - pp.shape[0], axis=0)])
        return np.concatenate([feats, pp], axis=1)

    def frame_times(self, n: int) -> np.ndarray:
        return (np.arange(n, dtype=np.float64) + 0.5) / self.config.frame_rate

    def extract(self, signal: np.ndarray) -> AudioFeatures:
        """Whole mono signal at 16 kHz -> pooled features; ``present`` when not silent. A silent or
        empty signal is not encoded (absent: its features are never used)."""
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        hand = self.prosody.extract(x)
        if not hand.present:
            return AudioFeatures(np.zeros((0, self.config.dim), dtype=np.float32), np.zeros(0), False)
        feats = self.compute(x, hand.features)
        return AudioFeatures(feats, self.frame_times(feats.shape[0]), True)


def _encoder_width(model) -> int:  # type: ignore[no-untyped-def]
    """The encoder state width of a loaded faster-whisper model (one tiny pass)."""
    import ctranslate2

    mel = np.zeros((1, model.model.n_mels, 2), dtype=np.float32)
    return int(np.array(model.model.encode(ctranslate2.StorageView.from_array(mel))).shape[-1])
