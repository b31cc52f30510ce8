from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import ConfigError
from core.features.audio import (
    PROSODY,
    AudioFeatureConfig,
    AudioFeatureExtractor,
    frame_signal,
    mel_filterbank,
)
from core.features.decode import load_audio

SR = 16000
F0, VOICING, ENERGY = -1, -2, -5  # columns of the prosody block


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_shapes_rates_and_profile() -> None:
    ex = AudioFeatureExtractor()
    out = ex.extract(tone(200, 1.0))
    # frames: 1 + (16000 - 512) // 160 = 97, 45 features (40 mel + 5 prosody)
    assert out.features.shape == (97, 45) and out.features.dtype == np.float32
    assert ex.profile.dim == 40 + len(PROSODY) and ex.profile.frame_rate == 100.0
    np.testing.assert_allclose(out.times[:2], [0.016, 0.026])
    assert mel_filterbank(SR, 512, 40, 60, 7600).shape == (40, 257)
    assert ex.extract(np.zeros(100, np.float32)).features.shape == (0, 45)


@pytest.mark.parametrize("freq", [90.0, 150.0, 310.0])
def test_pitch_of_a_harmonic_tone(freq: float) -> None:
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 6)).astype(np.float32) * 0.2
    f = AudioFeatureExtractor().extract(x).features
    f0 = 100 * 2 ** f[:, F0]
    assert np.all(f[:, VOICING] > 0.9)
    assert abs(np.median(f0) / freq - 1) < 0.01


def test_silence_and_noise_are_unvoiced_and_silence_is_absent() -> None:
    ex = AudioFeatureExtractor()
    silent = ex.extract(np.zeros(SR, np.float32))
    assert not silent.present and np.all(silent.features[:, F0] == 0)
    noise = ex.extract(np.random.default_rng(0).normal(scale=0.1, size=SR).astype(np.float32))
    assert noise.present and (noise.features[:, F0] != 0).mean() < 0.1
    # a loud tone is 20 dB (2 in log10 units) above one 10x quieter
    loud, quiet = ex.extract(tone(200, amp=0.3)).features, ex.extract(tone(200, amp=0.03)).features
    np.testing.assert_allclose(loud[:, ENERGY] - quiet[:, ENERGY], 2.0, atol=1e-3)


def test_streaming_equals_offline_on_jfk_in_random_chunks(samples_dir: Path) -> None:
    """Acceptance 2: push the real recording in random chunk sizes; every frame equals offline (1e-5)."""
    audio = load_audio(samples_dir / "jfk.flac")
    assert audio.shape == (176000,)  # 11.0 s at 16 kHz
    ex = AudioFeatureExtractor()
    offline = ex.extract(audio).features
    assert offline.shape == (1097, 45)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        stream, outs, i = ex.stream(), [], 0
        while i < audio.size:
            n = int(rng.choice([1, 7, 160, 511, 512, 513, 1600, 4000, 9999]))
            outs.append(stream.push(audio[i : i + n]))
            i += n
        online = np.concatenate(outs)
        assert online.shape == offline.shape
        assert np.abs(online - offline).max() <= 1e-5
        np.testing.assert_allclose(stream.times(3), ex.frame_times(1094, 3))


def test_jfk_is_speech_with_plausible_pitch(samples_dir: Path) -> None:
    f = AudioFeatureExtractor().extract(load_audio(samples_dir / "jfk.flac")).features
    voiced = f[:, F0] != 0
    assert 0.4 < voiced.mean() < 0.9
    f0 = 100 * 2 ** f[voiced, F0]
    assert 70 < np.median(f0) < 300


def test_frame_signal_is_a_view_and_config_is_validated() -> None:
    x = np.arange(1000, dtype=np.float32)
    fr = frame_signal(x, 512, 160)
    assert fr.shape == (4, 512) and fr[1, 0] == 160 and np.shares_memory(fr, x)
    with pytest.raises(ConfigError, match="too short for f0_min"):
        AudioFeatureConfig(f0_min=40.0)
    with pytest.raises(ConfigError, match="hop_length"):
        AudioFeatureConfig(hop_length=0)
