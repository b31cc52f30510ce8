"""MMIM baseline: shapes, absent modalities, the defects of the public code avoided, artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.batch import ModalityBatch
from core.mmim import MMIM, GaussianQ, MMIMConfig, MMIMLoss, load_mmim, save_mmim

DIMS = {"text": 12, "audio": 5, "vision": 7}


def _batch(b: int = 6, labels=None, seed: int = 0) -> ModalityBatch:
    g = torch.Generator().manual_seed(seed)
    seqs = {m: [torch.randn(3 + i, d, generator=g) for i in range(b)] for m, d in DIMS.items()}
    y = torch.tensor(labels if labels is not None else np.linspace(-2, 2, b), dtype=torch.float32)
    return ModalityBatch.from_sequences(seqs, labels=y)


def test_forward_shapes_and_lstm_reads_only_valid_steps():
    torch.manual_seed(0)
    model = MMIM(MMIMConfig(input_dims=DIMS)).eval()
    batch = _batch()
    out = model(batch)
    assert out.score.shape == (6,) and out.fused.shape == (6, 128) and out.reps["audio"].shape == (6, 16)
    # garbage in the padding must not change anything (masks, not packed sequences)
    noisy = ModalityBatch(
        {m: x.masked_fill(~batch.masks[m][..., None], 1e3) for m, x in batch.features.items()},
        batch.masks,
        batch.presence,
    )
    torch.testing.assert_close(model(noisy).score, out.score)


def test_absent_modality_uses_learned_vector():
    torch.manual_seed(0)
    model = MMIM(MMIMConfig(input_dims=DIMS)).eval()
    batch = _batch()
    presence = batch.presence.clone()
    presence[:, 1] = False
    out = model(batch.with_presence(presence))
    torch.testing.assert_close(out.reps["audio"], model.absent["audio"].expand(6, -1))
    assert not out.present[:, 1].any()


def test_loss_is_finite_without_positive_or_negative_labels():
    """The public code divides by an empty label class (NaN); ours leaves that sign out."""
    torch.manual_seed(0)
    cfg = MMIMConfig(input_dims=DIMS)
    model, loss = MMIM(cfg), MMIMLoss(cfg)
    for labels in ([1.0] * 6, [-1.0] * 6, [0.0] * 6):
        res = loss(model(_batch(labels=labels)), torch.tensor(labels))
        assert torch.isfinite(res.total), labels
        res.total.backward()


def test_gaussian_log_likelihood_keeps_the_logvar_term():
    q = GaussianQ(2, 3, 8)
    x, y = torch.zeros(4, 2), torch.zeros(4, 3)
    with torch.no_grad():
        for lin in (q.mu[-1], q.logvar[-1]):
            lin.weight.zero_()
            lin.bias.zero_()
        q.logvar[-1].bias.fill_(math.log(4.0))  # variance 4, mean 0, y == mean
    expected = 3 * (-0.5 * math.log(4.0) - 0.5 * math.log(2 * math.pi))  # exact N(0, 4) density at 0
    assert q.log_likelihood(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_critic_step_fits_q_on_detached_features():
    torch.manual_seed(0)
    cfg = MMIMConfig(input_dims=DIMS)
    model, loss = MMIM(cfg), MMIMLoss(cfg)
    out = model(_batch(16))
    c = loss.critic_loss(out, torch.linspace(-2, 2, 16))
    c.backward()
    assert all(p.grad is None for p in model.parameters())  # the model is not touched
    assert any(p.grad is not None for p in loss.critic_parameters())


def test_artifact_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    model = MMIM(MMIMConfig(input_dims=DIMS)).eval()
    save_mmim(model, tmp_path / "m", {"name": "t"})
    loaded = load_mmim(tmp_path / "m")
    batch = _batch()
    torch.testing.assert_close(loaded(batch).score, model(batch).score)
