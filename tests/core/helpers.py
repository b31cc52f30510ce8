"""Small models and batches for core tests."""

from __future__ import annotations

import torch

from core.batch import ModalityBatch
from core.config import FineConfig, FTREConfig, FusionConfig, MoQConfig

DIMS = {"text": 16, "audio": 8, "vision": 12}


def small_config(**kw: object) -> FineConfig:
    base: dict[str, object] = dict(
        input_dims=dict(DIMS),
        d_model=32,
        moq=MoQConfig(num_experts=2, num_queries=4, num_blocks=2, num_heads=4, dropout=0.0),
        ftre=FTREConfig(feat_dim=16, hidden=32),
        fusion=FusionConfig(num_layers=1, num_heads=4, head_hidden=32, dropout=0.0),
    )
    base.update(kw)
    return FineConfig(**base)  # type: ignore[arg-type]


def random_batch(
    b: int = 6, lens: dict[str, int] | None = None, seed: int = 0, pad: int = 0
) -> ModalityBatch:
    """Random features with per-sample lengths; ``pad`` extra padded (masked) frames at the end."""
    g = torch.Generator().manual_seed(seed)
    lens = lens or {"text": 7, "audio": 11, "vision": 9}
    feats, masks = {}, {}
    for m, d in DIMS.items():
        t = lens[m]
        x = torch.randn(b, t + pad, d, generator=g)
        valid = torch.randint(2, t + 1, (b,), generator=g)
        mask = torch.arange(t + pad)[None, :] < valid[:, None]
        feats[m], masks[m] = x, mask
    presence = torch.ones(b, 3, dtype=torch.bool)
    labels = torch.empty(b).uniform_(-3, 3, generator=g)
    return ModalityBatch(feats, masks, presence, labels)
