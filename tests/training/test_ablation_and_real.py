"""Ablation switches change the numbers; grouped CV folds on the real data; a real-data smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import LossConfig
from core.losses import FineLoss
from core.model import FINE
from training import datasets
from training.data import grouped_folds
from training.registry import build_config
from training.synthetic import planted_splits
from training.trainer import TrainConfig, Trainer

VARIANTS = {
    "full": ({}, {}),
    "no_moq": ({"moq": {"enabled": False}}, {}),
    "no_mi": ({}, {"use_mi": False}),
    "no_dcq": ({}, {"use_cl": False}),
}


def test_ablation_switches_change_the_numbers():
    splits = planted_splits(n_train=64, n_valid=32, n_test=32, seed=4)
    preds, terms = {}, {}
    for name, (model_over, loss_over) in VARIANTS.items():
        cfg = build_config(splits["train"].feature_dims, (-3.0, 3.0), "small", model_over)
        torch.manual_seed(0)
        model, loss = FINE(cfg), FineLoss(cfg, LossConfig(**loss_over))
        tr = Trainer(model, loss, TrainConfig(epochs=1, batch_size=16, seed=1))
        res = tr.fit(splits["train"], splits["valid"])
        preds[name] = tr.predict(splits["test"])[0]
        terms[name] = set(res.history[0])
    assert "train_aux" in terms["full"] and "train_aux" not in terms["no_moq"]
    assert "train_mi" in terms["full"] and "train_mi" not in terms["no_mi"]
    assert "train_cl" in terms["full"] and "train_cl" not in terms["no_dcq"]
    names = list(preds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not np.allclose(preds[a], preds[b]), (a, b)


def test_grouped_folds_on_real_misa(shared_data: Path):
    ds = datasets.load(f"misa:{shared_data / 'MOSI' / 'misa_dev.pkl'}")["valid"]
    folds = grouped_folds(ds.samples, 5)
    assert sorted(i for f in folds for i in f) == list(range(229))
    groups = [{ds.samples[i].group for i in f} for f in folds]
    assert all(len(g) == 2 for g in groups)  # 10 videos -> 2 per fold
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])


@pytest.mark.slow
def test_real_mosi_text_frozen_minilm_learns(shared_data: Path, tmp_path: Path):
    """Two epochs of FINE on frozen MiniLM embeddings already separate MOSI test sentiment."""
    from app.cli import main as fine

    out = tmp_path / "mosi"
    argv = ["train", "--data", f"csv:{shared_data / 'MOSI' / 'label.csv'}", "--out", str(out)]
    argv += ["--preset", "small", "--text-encoder", "packaged:minilm", "--epochs", "2", "--threads", "2"]
    assert fine(argv) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["Non0_acc_2"] > 0.70 and test["Corr"] > 0.5


@pytest.mark.slow
def test_real_mosi_finetuned_minilm_beats_the_ridge_probe(shared_data: Path, tmp_path: Path):
    """Run 1 of issue 3 (about 2.5 CPU-minutes a seed): fine-tuned MiniLM inside FINE vs the frozen-MiniLM
    ridge probe (Non0 Acc-2 79.9, Non0 F1 80.0, MAE 0.958, Corr 0.704, Acc-7 29.0 on the same split).

    Mean of three seeds (the default and 1, 2): a single 3-epoch run swings by several points with the
    dropout masks alone. Two numerically equivalent graphs (same outputs and gradients to 1e-6) gave
    Non0 Acc-2 83.5 vs 79.0 on the default seed; over the three seeds 83.6 vs 81.9."""
    import statistics

    from app.cli import main as fine

    out = tmp_path / "mosi-ft"
    argv = [
        "train",
        "--data",
        f"csv:{shared_data / 'MOSI' / 'label.csv'}",
        "--out",
        str(out),
        "--preset",
        "small",
    ]
    argv += ["--text-encoder", "packaged:minilm", "--finetune-text", "--lr-text", "5e-5", "--epochs", "3"]
    argv += ["--patience", "2", "--max-text-len", "64", "--threads", "1", "--seeds", "1111,1,2"]
    assert fine(argv) == 0
    runs = [json.loads((out / f"seed-{s}" / "metrics.json").read_text())["test"] for s in (1111, 1, 2)]
    test = {
        k: statistics.fmean(r[k] for r in runs) for k in ("Non0_acc_2", "Non0_F1", "Acc_7", "MAE", "Corr")
    }
    assert test["Non0_acc_2"] > 0.799 and test["Non0_F1"] > 0.800 and test["Acc_7"] > 0.290
    assert test["MAE"] < 0.958 and test["Corr"] > 0.704
