"""Trainer: run directory, early stopping, exact resume after an interruption, MMIM's epoch critics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from core.config import LossConfig
from core.losses import FineLoss
from core.model import FINE
from training.registry import build_config
from training.synthetic import planted_splits
from training.trainer import TrainConfig, Trainer


class _Stop(Exception):
    pass


def _setup(splits, seed=0):
    cfg = build_config(splits["train"].feature_dims, (-3.0, 3.0), "small")
    torch.manual_seed(seed)
    return FINE(cfg), FineLoss(cfg, LossConfig())


def test_resume_continues_exactly(tmp_path: Path):
    splits = planted_splits(n_train=64, n_valid=32, n_test=16, seed=1)
    tc = TrainConfig(epochs=3, batch_size=16, seed=5)
    model_a, loss_a = _setup(splits)
    Trainer(model_a, loss_a, tc, run_dir=tmp_path / "a").fit(splits["train"], splits["valid"])

    model_b, loss_b = _setup(splits)
    tr = Trainer(model_b, loss_b, tc, run_dir=tmp_path / "b")

    def interrupt(event, info):
        if event == "epoch" and info["epoch"] == 1:
            raise _Stop

    tr.add_callback(interrupt)
    with pytest.raises(_Stop):
        tr.fit(splits["train"], splits["valid"])
    model_c, loss_c = _setup(splits, seed=99)  # a fresh process: different init, restored from disk
    res = Trainer(model_c, loss_c, tc, run_dir=tmp_path / "b").fit(
        splits["train"], splits["valid"], resume=True
    )
    assert res.steps == 12 and len(res.history) == 3
    for (k, va), vc in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        torch.testing.assert_close(va, vc, rtol=0, atol=0, msg=k)
    rows = list(csv.DictReader((tmp_path / "b" / "log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert json.loads((tmp_path / "b" / "checkpoint" / "trainer.json").read_text())["epoch"] == 2


def test_early_stopping_and_best_weights(tmp_path: Path):
    splits = planted_splits(n_train=64, n_valid=32, n_test=16, seed=2)
    model, loss = _setup(splits)
    # lr so large that the validation loss gets worse: stops after `patience` bad epochs
    tc = TrainConfig(epochs=20, batch_size=16, lr=0.5, patience=2, grad_clip=0.0)
    tr = Trainer(model, loss, tc, run_dir=tmp_path)
    res = tr.fit(splits["train"], splits["valid"])
    assert len(res.history) < 20
    assert len(res.history) - 1 - res.best_epoch == 2
    assert tr.valid_loss(splits["valid"]) == pytest.approx(res.best_valid_loss, rel=1e-5)
    assert (tmp_path / "best" / "model.safetensors").exists()


def test_mmim_trains_with_epoch_critics():
    from core.mmim import MMIM, MMIMConfig, MMIMLoss

    splits = planted_splits(n_train=96, n_valid=32, n_test=16, seed=3)
    cfg = MMIMConfig(input_dims=splits["train"].feature_dims)
    torch.manual_seed(0)
    model, loss = MMIM(cfg), MMIMLoss(cfg)
    tr = Trainer(model, loss, TrainConfig(epochs=4, batch_size=16, lr=3e-3))
    ba = [p.detach().clone() for p in loss.critic_parameters()]
    res = tr.fit(splits["train"], splits["valid"])
    assert tr.critic_schedule == "epoch"
    assert any(not torch.equal(a, b) for a, b in zip(ba, loss.critic_parameters()))
    assert res.history[-1]["train_l1"] < res.history[0]["train_l1"]
    assert res.best_valid_loss < 1.2  # validation MAE (labels span [-3, 3]; predicting 0 gives ~1.2)


def test_unimodal_warmup_trains_single_modality_samples_first(tmp_path: Path):
    """Warm-up epochs see only the samples that hold one modality; the best epoch comes after them."""
    from core.config import ConfigError
    from training.data import Sample
    from training.trainer import unimodal_part

    splits = planted_splits(n_train=64, n_valid=32, n_test=16, seed=3)
    train = splits["train"]
    singles = [
        Sample(f"only-{m}-{i}", {k: (s.features[k] if k == m else None) for k in s.features}, s.label)
        for i, s in enumerate(train.samples[:24])
        for m in ("text", "audio")
    ]
    mixed = train.subset(range(len(train)))
    mixed.samples = list(train.samples) + singles
    part = unimodal_part(mixed)
    assert len(part) == len(singles) and all(s.id.startswith("only-") for s in part.samples)
    assert unimodal_part(train).samples == train.samples  # nothing single-modality: everything

    seen: list[int] = []
    model, loss = _setup(splits)
    tr = Trainer(model, loss, TrainConfig(epochs=3, batch_size=16, seed=5, warmup_epochs=2))
    original = tr._train_epoch

    def spy(data, epoch, rng):
        seen.append(len(data))
        return original(data, epoch, rng)

    tr._train_epoch = spy  # type: ignore[method-assign]
    res = tr.fit(mixed, splits["valid"])
    assert seen == [len(singles), len(singles), len(mixed)]
    assert res.best_epoch == 2 and len(res.history) == 3
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)
