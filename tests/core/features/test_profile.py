from __future__ import annotations

import pytest

from core.config import MODALITIES, ConfigError, FineConfig
from core.features.profile import FeatureProfile, FeatureProfileError, ModalityProfile, check_profile

AUDIO = ModalityProfile(
    "fine-logmel-prosody", "1", 45, frame_rate=100, sample_rate=16000, options={"n_mels": 40}
)
VISION = ModalityProfile("fine-facemesh-expression", "1", 20, frame_rate=5.0)
TEXT = ModalityProfile("token-embeddings", "1", 384, options={"source": "packaged:minilm"})


def test_round_trip_through_dict_and_fine_config() -> None:
    prof = FeatureProfile(text=TEXT, audio=AUDIO, vision=VISION)
    assert FeatureProfile.from_dict(prof.to_dict()) == prof
    cfg = FineConfig(input_dims={"text": 384, "audio": 45, "vision": 20}, feature_profile=prof.to_dict())
    again = FineConfig.from_dict(cfg.to_dict())
    assert FeatureProfile.from_dict(again.feature_profile) == prof
    assert prof.dims() == {"text": 384, "audio": 45, "vision": 20}
    assert AUDIO.frame_rate == 100.0 and isinstance(AUDIO.frame_rate, float)


def test_by_modality_is_keyed_in_modalities_order() -> None:
    prof = FeatureProfile(audio=AUDIO, vision=VISION)
    assert prof.by_modality() == {"text": None, "audio": AUDIO, "vision": VISION}
    assert tuple(prof.by_modality()) == MODALITIES
    assert prof.get("vision") is VISION
    with pytest.raises(KeyError, match="unknown modality"):
        prof.get("face")


def test_unknown_keys_and_bad_values_are_errors() -> None:
    data = FeatureProfile(audio=AUDIO).to_dict()
    data["audio"]["hop"] = 160
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) feature_profile.audio.hop"):
        FeatureProfile.from_dict(data)
    with pytest.raises(ConfigError, match="unknown config key"):
        FeatureProfile.from_dict({"audio": AUDIO.__dict__, "depth": None})
    with pytest.raises(ConfigError, match="dim must be a positive int"):
        ModalityProfile("x", "1", 0)


def test_check_profile_accepts_match_and_names_mismatch() -> None:
    running = FeatureProfile(text=TEXT, audio=AUDIO, vision=VISION)
    check_profile(FeatureProfile(audio=AUDIO, vision=VISION).to_dict(), running)  # subset is fine
    other = ModalityProfile(
        "fine-logmel-prosody", "2", 45, frame_rate=100, sample_rate=16000, options={"n_mels": 40}
    )
    with pytest.raises(FeatureProfileError) as err:
        check_profile(FeatureProfile(audio=other, vision=VISION), running)
    msg = str(err.value)
    assert "audio: model needs fine-logmel-prosody v2 (45-d at 100 fps)" in msg
    assert "computes fine-logmel-prosody v1" in msg and "vision" not in msg.split("audio:")[0]
    assert "\n" not in msg
    with pytest.raises(FeatureProfileError, match=r"vision: model needs .* no vision extractor"):
        check_profile(FeatureProfile(vision=VISION), FeatureProfile(audio=AUDIO))
    with pytest.raises(FeatureProfileError, match="cannot be computed live"):
        check_profile(None, running)
    with pytest.raises(FeatureProfileError, match="invalid"):
        check_profile({"audio": {"name": "x"}}, running)


def test_extractor_config_from_a_models_profile_reproduces_it() -> None:
    from core.features.audio import AudioFeatureConfig, AudioFeatureExtractor
    from core.features.clip import ExtractorConfig
    from core.features.vision import VisionFeatureConfig, VisionFeatureExtractor

    audio = AudioFeatureExtractor(AudioFeatureConfig(hop_length=320, n_mels=24, f0_max=500.0)).profile
    vision = VisionFeatureExtractor(VisionFeatureConfig(fps=10.0, max_faces=1)).profile
    cfg = ExtractorConfig.from_profile(FeatureProfile(audio=audio, vision=vision).to_dict())
    assert cfg.audio.hop_length == 320 and cfg.audio.n_mels == 24 and cfg.vision.fps == 10.0
    running = FeatureProfile(
        audio=AudioFeatureExtractor(cfg.audio).profile, vision=VisionFeatureExtractor(cfg.vision).profile
    )
    check_profile(FeatureProfile(audio=audio, vision=vision), running)
