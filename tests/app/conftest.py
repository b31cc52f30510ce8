"""Fixtures for app tests: a tiny random-weight FINE whose feature profile is what this install computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> object:
    """Small graphs and a busy 2-core machine: one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_model(directory: Path, text_encoder: str | None = None) -> Path:
    """Random weights (the pipeline, not the model, is under test), the real running feature profile
    (with ``text_encoder``'s text features where given, else the default's)."""
    pytest.importorskip("transformers")
    from core.artifact import ModelCard, save_model
    from core.config import FineConfig, FTREConfig, FusionConfig, MoQConfig
    from core.features.clip import ExtractorConfig, FeatureExtractors
    from core.features.text import TextFeatureConfig
    from core.model import FINE

    config = ExtractorConfig(text=TextFeatureConfig(text_encoder)) if text_encoder else None
    profile = FeatureExtractors(config).profile
    cfg = FineConfig(
        input_dims=profile.dims(),
        d_model=32,
        moq=MoQConfig(num_experts=2, num_queries=4, num_blocks=1, num_heads=2, dropout=0.0),
        ftre=FTREConfig(feat_dim=16, hidden=32),
        fusion=FusionConfig(num_layers=1, num_heads=2, dropout=0.0, head_hidden=32),
        feature_profile=profile.to_dict(),
    )
    torch.manual_seed(0)
    model = FINE(cfg).eval()
    with torch.no_grad():  # unit-scale absent tokens: contributions of an untrained model are not ~0
        for enc in model.encoders.values():
            enc.absent.copy_(torch.randn(enc.absent.shape))
    return save_model(model, directory, ModelCard(name="tiny-random"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")


@pytest.fixture(scope="session")
def live_scorer(tiny_model: Path):  # type: ignore[no-untyped-def]
    """One Scorer (tiny model, torch, 1 thread) shared by the live engine and GUI tests."""
    pytest.importorskip("faster_whisper")
    from app.pipeline.scorer import Scorer

    s = Scorer(tiny_model, "torch", threads=1)
    yield s
    s.close()


@pytest.fixture(scope="session")
def live_transcriber():  # type: ignore[no-untyped-def]
    """The packaged tiny.en Whisper, loaded once."""
    from core.features.transcribe import Transcriber

    t = Transcriber(cpu_threads=2)
    t.warm_up()
    return t
