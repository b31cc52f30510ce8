"""Acceptance 6: a small FINE learns a planted cross-modal rule and needs vision for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import MODALITIES, LossConfig
from core.losses import FineLoss
from core.model import FINE
from tests.core.helpers import small_config
from tests.training.helpers import iterate_batches
from training.data import Dataset
from training.synthetic import planted_splits
from training.trainer import TrainConfig, Trainer


@torch.no_grad()
def mae(model: FINE, data: Dataset, drop: str | None = None) -> float:
    errs = []
    for batch in iterate_batches(data, 128, shuffle=False):
        if drop is not None:
            batch.presence[:, MODALITIES.index(drop)] = False
        errs.append((model(batch).score - batch.labels).abs().numpy())
    return float(np.concatenate(errs).mean())


@pytest.fixture(scope="module")
def trained() -> tuple[FINE, dict[str, Dataset]]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    splits = planted_splits(n_train=1000, n_valid=200, n_test=300, seed=1)
    cfg = small_config(input_dims=splits["train"].feature_dims)
    model = FINE(cfg)
    loss = FineLoss(cfg, LossConfig(critic_hidden=64, queue_size=64))
    Trainer(model, loss, TrainConfig(epochs=50, max_steps=320, batch_size=32, lr=2e-3, seed=1)).fit(
        splits["train"], splits["valid"]
    )
    return model, splits


def test_planted_rule_is_learned(trained):
    model, splits = trained
    test = splits["test"]
    baseline = float(np.abs(test.labels() - splits["train"].labels().mean()).mean())
    got = mae(model.eval(), test)
    print(f"test MAE {got:.3f} vs predict-the-mean {baseline:.3f} (ratio {got / baseline:.2f})")
    assert got < 0.4 * baseline


def test_without_vision_the_model_does_clearly_worse(trained):
    model, splits = trained
    full, no_vision = mae(model.eval(), splits["test"]), mae(model, splits["test"], drop="vision")
    no_text = mae(model, splits["test"], drop="text")
    print(f"MAE full {full:.3f}, vision absent {no_vision:.3f}, text absent {no_text:.3f}")
    assert no_vision > 2.0 * full
    assert no_text < 1.5 * full  # text is noise in the planted rule: losing it costs little
