"""Issue 8, acceptance 2: with a modality absent its contribution is exactly 0.0 and the score is the
model's prediction from the remaining modalities alone (torch and onnxruntime runners)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.batch import ModalityBatch
from core.config import MODALITIES
from core.model import FINE
from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from export.runtime.torch_runner import TorchRunner
from tests.export.conftest import make_batch

LENGTHS = {"text": 6, "audio": 9, "vision": 5}


def _remaining_only(batch: ModalityBatch, m: str) -> ModalityBatch:
    """The batch as if modality ``m`` had never been captured: one masked placeholder step, flag off."""
    feats, masks = dict(batch.features), dict(batch.masks)
    b, d = batch.batch_size, batch.features[m].shape[-1]
    feats[m] = torch.zeros(b, 1, d)
    masks[m] = torch.zeros(b, 1, dtype=torch.bool)
    presence = batch.presence.clone()
    presence[:, MODALITIES.index(m)] = False
    return ModalityBatch(feats, masks, presence)


def _garbage(batch: ModalityBatch, m: str, seed: int) -> ModalityBatch:
    """``m``'s values replaced by large random numbers, its flag off: the values must not matter."""
    feats = dict(batch.features)
    feats[m] = torch.randn(feats[m].shape, generator=torch.Generator().manual_seed(seed)) * 100.0
    presence = batch.presence.clone()
    presence[:, MODALITIES.index(m)] = False
    return ModalityBatch(feats, dict(batch.masks), presence)


def _check(runner, model: FINE, seed: int, atol: float) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(model.config, 5, LENGTHS, seed=seed)
    for i, m in enumerate(MODALITIES):
        pred = runner.infer(_garbage(batch, m, seed + i))
        assert (pred.contributions[:, i] == 0.0).all(), (m, pred.contributions)
        assert (np.abs(np.delete(pred.contributions, i, axis=1)) > 0).all()  # the others still count
        with torch.inference_mode():
            alone = model(_remaining_only(batch, m)).score.numpy()
        np.testing.assert_allclose(pred.score, alone, atol=atol, rtol=0)
        # efficiency: the two remaining contributions add up to score − baseline
        total = pred.contributions.sum(1)
        np.testing.assert_allclose(total, pred.score - pred.baseline, atol=max(atol, 1e-5))


def test_torch_runner_random_model(small_model: FINE) -> None:
    _check(TorchRunner(small_model), small_model, seed=11, atol=1e-6)


def test_onnxruntime_runner(small_model: FINE, small_onnx: Path) -> None:
    pytest.importorskip("onnxruntime")
    with OnnxRuntimeRunner(small_onnx, threads=1) as runner:
        _check(runner, small_model, seed=12, atol=1e-5)


def test_torch_runner_robust_trained_model(tmp_path: Path) -> None:
    from app.cli import main as fine
    from core.artifact import load_model

    run = tmp_path / "run"
    argv = ["train", "--data", "synthetic:48", "--out", str(run), "--preset", "small", "--epochs", "1"]
    argv += ["--batch-size", "16", "--threads", "1", "--modality-dropout", "0.3", "--distill", "mse"]
    assert fine(argv) == 0
    model = load_model(run / "model").eval()
    batch = make_batch(model.config, 5, {"text": 6, "audio": 9, "vision": 5}, seed=13)
    assert batch.features["audio"].shape[-1] == model.config.input_dims["audio"]
    _check(TorchRunner(model), model, seed=13, atol=1e-6)
