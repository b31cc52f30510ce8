"""Fixtures for export tests: a small FINE, its ONNX export, a tiny BERT, batch builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.batch import ModalityBatch
from core.config import MODALITIES, FineConfig, FTREConfig, FusionConfig, MoQConfig, TextEncoderConfig
from core.model import FINE
from export.io import example_feeds, feeds_to_tensors

SMALL_DIMS = {"text": 16, "audio": 5, "vision": 7}


def small_config(**overrides: object) -> FineConfig:
    base = dict(
        input_dims=dict(SMALL_DIMS),
        d_model=32,
        moq=MoQConfig(num_experts=2, num_queries=4, num_heads=2),
        ftre=FTREConfig(feat_dim=16, hidden=32),
        fusion=FusionConfig(num_layers=1, num_heads=2, head_hidden=32),
    )
    base.update(overrides)
    return FineConfig(**base)  # type: ignore[arg-type]


def randomise_absent_tokens(model: torch.nn.Module, seed: int = 0) -> None:
    """Make an untrained model less degenerate: unit-scale absent tokens (their init scale is 0.02)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for enc in model.encoders.values():
            enc.absent.copy_(torch.randn(enc.absent.shape, generator=g))


def make_batch(
    config: FineConfig,
    b: int,
    lengths: dict[str, int],
    seed: int = 0,
    text_input: str = "embeddings",
    vocab_size: int = 100,
    presence: np.ndarray | None = None,
    p_absent: float = 0.0,
) -> ModalityBatch:
    feeds = example_feeds(config, text_input, b, lengths, vocab_size=vocab_size, seed=seed)  # type: ignore[arg-type]
    if presence is not None:
        feeds["presence"] = presence
    elif p_absent > 0:
        feeds["presence"] = np.random.default_rng(seed + 100).random((b, 3)) >= p_absent
    features, masks, pres = feeds_to_tensors(feeds)
    return ModalityBatch(features, masks, pres)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> object:
    """Small graphs are overhead-bound: one thread is faster, and immune to a busy 2-core machine
    (torch's OpenMP spin-wait makes 2 threads up to 10x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_model() -> FINE:
    torch.manual_seed(0)
    model = FINE(small_config()).eval()
    randomise_absent_tokens(model)
    return model


@pytest.fixture(scope="session")
def small_onnx(small_model: FINE, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.onnx_export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("onnx") / "small.onnx"
    return export_onnx(small_model, out, ExportOptions(simplify=True)).path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT saved as a local directory (a real text-encoder source)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    cfg = transformers.BertConfig(
        vocab_size=120,
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
    )
    out = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def bert_model(tiny_bert_dir: Path) -> FINE:
    from core.artifact import build_model

    torch.manual_seed(2)
    cfg = small_config(
        input_dims={**SMALL_DIMS, "text": 24}, text_encoder=TextEncoderConfig(source=str(tiny_bert_dir))
    )
    model = build_model(cfg).eval()
    randomise_absent_tokens(model)
    return model


LENGTH_CASES = [
    {"text": 3, "audio": 1, "vision": 9},
    {"text": 12, "audio": 40, "vision": 5},
    {"text": 50, "audio": 50, "vision": 50},
]
assert all(set(c) == set(MODALITIES) for c in LENGTH_CASES)
