"""Frame-level acoustic features: log-mel spectrum + prosody (energy, pitch, voicing, ZCR, flatness).

One function, :meth:`AudioFeatureExtractor.compute_frames`, turns a stack of frames into features;
the offline form (:meth:`AudioFeatureExtractor.extract`, a whole signal) and the streaming form
(:class:`AudioFeatureStream`, push samples, get frames) both cut frames with :func:`frame_signal` and
call it, so live and offline features are the same frames. Frame ``i`` covers samples
``[i·hop, i·hop + frame_length)``; a trailing partial frame is not emitted (no padding, no centring,
no statistics across frames).

Per frame, in this order (``dim = n_mels + 5``):
  ``n_mels`` log-mel energies (natural log of mel power, Hann window),
  log10 frame energy (mean square), zero-crossing rate, spectral flatness (0..1),
  voicing (peak of the window-corrected normalised autocorrelation, 0..1),
  log2(F0 / 100 Hz) on voiced frames, 0 on unvoiced ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from core.errors import check
from core.features.profile import ModalityProfile

log = logging.getLogger(__name__)

NAME = "fine-logmel-prosody"
VERSION = "1"
PROSODY = ("log_energy", "zcr", "flatness", "voicing", "log2_f0")


@dataclass(frozen=True)
class AudioFeatureConfig:
    sample_rate: int = 16000
    frame_length: int = 512  # samples (32 ms at 16 kHz); also the FFT size
    hop_length: int = 160  # samples (10 ms: 100 frames per second)
    n_mels: int = 40
    fmin: float = 60.0
    fmax: float = 7600.0
    f0_min: float = 70.0
    f0_max: float = 400.0
    voicing_threshold: float = 0.45
    octave_cost: float = 0.02  # per octave of lag: prefer the shortest of equally good periods (Boersma 1993)
    silence_dbfs: float = -45.0  # frames quieter than this are inactive (and never voiced)
    min_active: float = 0.05  # a clip is "present" when at least this fraction of frames is active

    def __post_init__(self) -> None:
        check(self.sample_rate >= 8000, f"audio.sample_rate must be >= 8000, got {self.sample_rate}")
        check(self.frame_length >= 64, f"audio.frame_length must be >= 64, got {self.frame_length}")
        check(0 < self.hop_length <= self.frame_length, "audio.hop_length must be in (0, frame_length]")
        check(self.n_mels >= 1, f"audio.n_mels must be >= 1, got {self.n_mels}")
        check(
            0 <= self.fmin < self.fmax <= self.sample_rate / 2,
            "audio: need 0 <= fmin < fmax <= sample_rate/2",
        )
        check(0 < self.f0_min < self.f0_max, "audio: need 0 < f0_min < f0_max")
        check(
            self.sample_rate / self.f0_min < self.frame_length / 2,
            f"audio: frame_length {self.frame_length} is too short for f0_min {self.f0_min} Hz "
            "(need two periods per frame)",
        )
        check(0 < self.voicing_threshold < 1, "audio.voicing_threshold must be in (0, 1)")
        check(0 <= self.octave_cost < 1, "audio.octave_cost must be in [0, 1)")
        check(0 <= self.min_active <= 1, "audio.min_active must be in [0, 1]")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def dim(self) -> int:
        return self.n_mels + len(PROSODY)


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, ``(n_mels, n_fft // 2 + 1)``, area-normalised."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= 2.0 / (upper - lower)  # equal area (Slaney normalisation)
    return fb.astype(np.float32)


def frame_signal(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """View of all complete frames, ``(n, frame_length)``; no copy, no padding."""
    if signal.shape[0] < frame_length:
        return np.zeros((0, frame_length), dtype=np.float32)
    return np.lib.stride_tricks.sliding_window_view(signal, frame_length)[::hop_length]


@dataclass
class AudioFeatures:
    features: np.ndarray  # (n, dim) float32
    times: np.ndarray  # (n,) frame centre times in seconds from the first sample
    present: bool  # enough active (non-silent) frames


class AudioFeatureExtractor:
    """Offline extractor, and the shared frame -> feature computation the stream uses."""

    def __init__(self, config: AudioFeatureConfig | None = None) -> None:
        self.config = cfg = config or AudioFeatureConfig()
        n = cfg.frame_length
        self._window = torch.hann_window(n, periodic=True, dtype=torch.float64).float()
        self._fft_n = (
            2 * n
        )  # zero-padded: power at even bins is the n-point spectrum, the rest serves autocorr
        self._mel = torch.from_numpy(
            np.ascontiguousarray(mel_filterbank(cfg.sample_rate, n, cfg.n_mels, cfg.fmin, cfg.fmax).T)
        )
        self._lag_lo = max(2, int(np.floor(cfg.sample_rate / cfg.f0_max)))
        self._lag_hi = int(np.ceil(cfg.sample_rate / cfg.f0_min))
        w = np.hanning(n + 1)[:-1]
        w_ac = np.fft.irfft(np.abs(np.fft.rfft(w, self._fft_n)) ** 2)
        self._window_ac = torch.from_numpy((w_ac[: self._lag_hi + 2] / w_ac[0]).astype(np.float32))
        self._silence = cfg.silence_dbfs / 10.0  # in log10 mean-square units
        lags = torch.arange(self._lag_lo, self._lag_hi + 1, dtype=torch.float32)
        self._octave_penalty = cfg.octave_cost * torch.log2(lags / self._lag_lo)

    @property
    def profile(self) -> ModalityProfile:
        cfg = self.config
        options = {
            "frame_length": cfg.frame_length,
            "n_mels": cfg.n_mels,
            "fmin": cfg.fmin,
            "fmax": cfg.fmax,
            "f0_range": [cfg.f0_min, cfg.f0_max],
            "voicing_threshold": cfg.voicing_threshold,
            "octave_cost": cfg.octave_cost,
        }
        return ModalityProfile.of_config(NAME, VERSION, cfg, options)

    def compute_frames(self, frames: np.ndarray) -> np.ndarray:
        """``(n, frame_length)`` samples -> ``(n, dim)`` float32 features; rows are independent.

        Runs on torch's CPU kernels (MKL FFT and GEMM are several times faster than numpy's here), on
        one intra-op thread: a few frames at a time gain nothing from threads, and on a busy machine
        (capture, ASR and inference threads) OpenMP's spinning pool made small calls ~100x slower.
        """
        cfg = self.config
        n = frames.shape[0]
        if n == 0:
            return np.zeros((0, cfg.dim), dtype=np.float32)
        with torch.inference_mode(), _one_thread():
            x = torch.from_numpy(np.array(frames, dtype=np.float32))  # always a private, writable copy
            spec = torch.fft.rfft(x * self._window, n=self._fft_n, dim=1)  # (n, L + 1)
            power = spec.real.square() + spec.imag.square()
            p = power[:, ::2]  # (n, L/2 + 1): the L-point power spectrum
            out = torch.empty((n, cfg.dim), dtype=torch.float32)
            k = cfg.n_mels
            out[:, :k] = torch.log(p @ self._mel + 1e-10)
            log_e = torch.log10(x.square().mean(dim=1) + 1e-10)
            out[:, k] = log_e
            signs = torch.signbit(x)
            out[:, k + 1] = (signs[:, 1:] != signs[:, :-1]).sum(dim=1) / (x.shape[1] - 1)
            p_pos = p[:, 1:] + 1e-12
            out[:, k + 2] = torch.exp(torch.log(p_pos).mean(dim=1)) / p_pos.mean(dim=1)
            voicing, f0 = self._pitch(power, log_e)
            out[:, k + 3] = voicing
            out[:, k + 4] = torch.where(f0 > 0, torch.log2(f0.clamp_min(1.0) / 100.0), 0.0)
        return out.numpy()

    def _pitch(self, power: Tensor, log_e: Tensor) -> tuple[Tensor, Tensor]:
        """Autocorrelation pitch (Boersma 1993 style window correction) -> (voicing 0..1, F0 Hz or 0)."""
        cfg = self.config
        ac = torch.fft.irfft(power, n=self._fft_n, dim=1)[:, : self._lag_hi + 2]
        norm = ac / ac[:, :1].clamp_min(1e-20) / self._window_ac
        lo, hi = self._lag_lo, self._lag_hi
        seg = norm[:, lo : hi + 1]
        i = (seg - self._octave_penalty).argmax(dim=1, keepdim=True)
        peak = seg.gather(1, i)[:, 0]
        lag = i + lo
        # parabolic interpolation around the peak (neighbours always exist: lo >= 2, hi + 1 < len)
        a = norm.gather(1, lag - 1)[:, 0]
        c = norm.gather(1, lag + 1)[:, 0]
        denom = a - 2 * peak + c
        safe = torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
        shift = torch.where(denom.abs() > 1e-12, 0.5 * (a - c) / safe, 0.0).clamp(-0.5, 0.5)
        voicing = peak.clamp(0.0, 1.0)
        voiced = (voicing > cfg.voicing_threshold) & (log_e > self._silence)
        f0 = torch.where(voiced, cfg.sample_rate / (lag[:, 0] + shift), 0.0)
        return voicing, f0

    def frame_times(self, start_frame: int, n: int) -> np.ndarray:
        cfg = self.config
        idx = np.arange(start_frame, start_frame + n, dtype=np.float64)
        return (idx * cfg.hop_length + cfg.frame_length / 2) / cfg.sample_rate

    def is_present(self, features: np.ndarray) -> bool:
        """Enough frames louder than ``silence_dbfs``: silence counts as an absent modality."""
        if features.shape[0] == 0:
            return False
        active = features[:, self.config.n_mels] > self._silence
        return bool(active.mean() >= self.config.min_active)

    def extract(self, signal: np.ndarray) -> AudioFeatures:
        """Whole mono signal at ``config.sample_rate`` -> features of every complete frame."""
        signal = np.asarray(signal, dtype=np.float32).reshape(-1)
        frames = frame_signal(signal, self.config.frame_length, self.config.hop_length)
        feats = self.compute_frames(frames)
        return AudioFeatures(feats, self.frame_times(0, feats.shape[0]), self.is_present(feats))

    def warm_up(self) -> None:
        """Nothing to load (the same call warms the Whisper voice features up)."""

    def stream(self) -> AudioFeatureStream:
        return AudioFeatureStream(self)


@dataclass
class AudioFeatureStream:
    """Push samples in any chunk sizes, get the frames completed so far (same as offline, frame for frame)."""

    extractor: AudioFeatureExtractor
    _buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    frames_emitted: int = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        cfg = self.extractor.config
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._buffer, samples]) if self._buffer.size else samples
        frames = frame_signal(buf, cfg.frame_length, cfg.hop_length)
        feats = self.extractor.compute_frames(frames)
        consumed = frames.shape[0] * cfg.hop_length
        self._buffer = np.array(
            buf[consumed:], dtype=np.float32
        )  # copy: never keep a view of the caller's array
        self.frames_emitted += frames.shape[0]
        return feats

    def times(self, n_last: int) -> np.ndarray:
        """Centre times of the last ``n_last`` emitted frames."""
        return self.extractor.frame_times(self.frames_emitted - n_last, n_last)

    def reset(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0
