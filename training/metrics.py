"""Regression-as-sentiment metrics with thuiar/MMSA ``metricsTop`` conventions (docs/METHOD.md §4).

Values are fractions (0.8 is 80 %), unrounded. Rounding for Acc-5/Acc-7 is numpy's half-to-even
(``np.round(2.5) == 2``, ``np.round(-0.5) == -0``), exactly as MMSA. F1 is sklearn's ``average="weighted"``.
"""

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


# CH-SIMS bins (MMSA ``__eval_sims_regression``): values are clipped to [-1, 1] first, then class i is
# ``bins[i] < x <= bins[i + 1]``.
SIMS_BINS = {
    2: (-1.01, 0.0, 1.01),  # [-1, 0] vs (0, 1]
    3: (-1.01, -0.1, 0.1, 1.01),  # [-1, -0.1], (-0.1, 0.1], (0.1, 1]
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def _bin(x: np.ndarray, bins: tuple[float, ...]) -> np.ndarray:
    out = np.zeros(len(x), dtype=np.int64)
    for i in range(len(bins) - 1):
        out[(x > bins[i]) & (x <= bins[i + 1])] = i
    return out


def sims_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """CH-SIMS metrics: Acc-2/3/5 on the MMSA bins, weighted F1 of Acc-2, MAE and Corr (on clipped values)."""
    pred = np.clip(np.asarray(pred, dtype=np.float64).reshape(-1), -1.0, 1.0)
    true = np.clip(np.asarray(true, dtype=np.float64).reshape(-1), -1.0, 1.0)
    out = {f"Acc_{k}": float(np.mean(_bin(pred, b) == _bin(true, b))) for k, b in SIMS_BINS.items()}
    out["F1"] = _weighted_f1(_bin(true, SIMS_BINS[2]), _bin(pred, SIMS_BINS[2]))
    out["MAE"] = float(np.mean(np.abs(pred - true)))
    out["Corr"] = _corr(pred, true)
    return out


def metrics_for(label_range: tuple[float, float], pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MOSI/MOSEI metrics for a [-3, 3] scale, CH-SIMS metrics for a [-1, 1] scale."""
    return sims_metrics(pred, true) if label_range[1] <= 1.0 else regression_metrics(pred, true)
