"""MMSA metric conventions (docs/METHOD.md §4), checked on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import metrics_for, regression_metrics, sims_metrics


def test_zero_labels_split_has0_and_non0():
    true = np.array([0.0, 0.0, 1.0, -1.0, 2.0])
    pred = np.array([0.5, -0.5, 0.2, 0.3, -0.1])
    m = regression_metrics(pred, true)
    # Has0: label >= 0 vs pred >= 0 -> [T,T,T,F,T] vs [T,F,T,T,F]: agree on 0 and 2 -> 2/5
    assert m["Has0_acc_2"] == pytest.approx(2 / 5)
    # Non0 drops the two zero labels: [1,-1,2] (>0: T,F,T) vs [0.2,0.3,-0.1] (>0: T,T,F) -> 1/3
    assert m["Non0_acc_2"] == pytest.approx(1 / 3)
    # weighted F1 over true classes of Non0: class T (support 2): tp=1 fp=1 fn=1 -> 0.5;
    # class F (support 1): tp=0 fp=1 fn=1 -> 0.  weighted = (2*0.5 + 0) / 3
    assert m["Non0_F1"] == pytest.approx(1 / 3)
    assert m["MAE"] == pytest.approx(np.mean([0.5, 0.5, 0.8, 1.3, 2.1]))


def test_half_to_even_rounding_in_acc7_and_acc5():
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2
    true = np.array([0.5, 1.5, 2.5, -0.5, -1.5])
    pred = np.array([0.0, 2.0, 2.0, 0.4, -2.4])
    m = regression_metrics(pred, true)
    assert m["Acc_7"] == pytest.approx(1.0)  # 0==0, 2==2, 2==2, -0==0, -2==-2
    # Acc-5 clips to [-2, 2] first: true 2.5 -> 2 ; pred -2.4 -> -2
    assert m["Acc_5"] == pytest.approx(1.0)
    # half-away-from-zero rounding would have said 1 != 0 for the first sample
    m2 = regression_metrics(np.array([1.0]), np.array([0.5]))
    assert m2["Acc_7"] == 0.0


def test_acc7_clips_to_three():
    m = regression_metrics(np.array([5.0, -4.0]), np.array([3.0, -3.0]))
    assert m["Acc_7"] == 1.0
    assert m["MAE"] == pytest.approx(1.5)  # MAE is on unclipped values


def test_corr_and_constant_prediction():
    true = np.array([-2.0, -1.0, 1.0, 2.0])
    assert regression_metrics(true * 0.5 + 0.1, true)["Corr"] == pytest.approx(1.0)
    assert regression_metrics(np.zeros(4), true)["Corr"] == 0.0  # MMSA gives NaN; we report 0


def test_against_sklearn_on_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    true = np.round(rng.uniform(-3, 3, 300) * 5) / 5  # many exact zeros and .5s
    pred = true + rng.normal(0, 1, 300)
    m = regression_metrics(pred, true)
    nz = true != 0
    assert m["Has0_F1"] == pytest.approx(sk.f1_score(true >= 0, pred >= 0, average="weighted"))
    assert m["Non0_F1"] == pytest.approx(sk.f1_score(true[nz] > 0, pred[nz] > 0, average="weighted"))
    assert m["Non0_acc_2"] == pytest.approx(sk.accuracy_score(true[nz] > 0, pred[nz] > 0))


def test_sims_bins():
    # bins: acc2 [-1,0] | (0,1]; acc3 [-1,-0.1] | (-0.1,0.1] | (0.1,1]
    true = np.array([0.0, 0.1, -0.1, 0.7, -1.5])
    pred = np.array([0.05, 0.1, -0.05, 0.71, -1.0])
    m = sims_metrics(pred, true)
    # acc2: 0->c0 vs 0.05->c1 (miss); 0.1 c1 / 0.1 c1; -0.1 c0/-0.05 c0; 0.7 c1/0.71 c1; -1 c0/-1 c0
    assert m["Acc_2"] == pytest.approx(4 / 5)
    # acc3: 0 -> mid, 0.05 -> mid ok; 0.1 -> mid (<=0.1), 0.1 mid ok; -0.1 -> low, -0.05 -> mid miss;
    # 0.7 high/high ok; -1 low/low ok
    assert m["Acc_3"] == pytest.approx(4 / 5)
    # acc5: 0.7 -> (0.1, 0.7] bin 3, 0.71 -> bin 4: miss; -0.1 bin 1 vs -0.05 bin 2: miss
    assert m["Acc_5"] == pytest.approx(3 / 5)
    assert m["MAE"] == pytest.approx(np.mean([0.05, 0.0, 0.05, 0.01, 0.0]))  # on clipped values


def test_metrics_for_picks_scale():
    y = np.array([-1.0, 1.0])
    assert "Acc_3" in metrics_for((-1.0, 1.0), y, y)
    assert "Non0_acc_2" in metrics_for((-3.0, 3.0), y, y)
