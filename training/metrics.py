"""Regression-as-sentiment metrics with thuiar/MMSA ``metricsTop`` conventions (METHOD.md §4)."""

from __future__ import annotations

import numpy as np


def _weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present in ``y_true`` (sklearn ``average='weighted'``)."""
    classes, support = np.unique(y_true, return_counts=True)
    f1s = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1s.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.sum(np.array(f1s) * support) / np.sum(support)) if len(classes) else 0.0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MOSI/MOSEI metrics: Has0/Non0 Acc-2 and F1, Acc-5, Acc-7, MAE, Corr (fractions, not percent)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    non0 = true != 0
    out = {
        "Has0_acc_2": float(np.mean((pred >= 0) == (true >= 0))),
        "Has0_F1": _weighted_f1(true >= 0, pred >= 0),
        "Non0_acc_2": float(np.mean((pred[non0] > 0) == (true[non0] > 0))) if non0.any() else 0.0,
        "Non0_F1": _weighted_f1(true[non0] > 0, pred[non0] > 0) if non0.any() else 0.0,
        "Acc_5": float(np.mean(np.round(np.clip(pred, -2, 2)) == np.round(np.clip(true, -2, 2)))),
        "Acc_7": float(np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(true, -3, 3)))),
        "MAE": float(np.mean(np.abs(pred - true))),
        "Corr": _corr(pred, true),
    }
    return out
