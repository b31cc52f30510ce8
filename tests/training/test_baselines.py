"""The same-run baselines beside the default model's numbers (training.baselines)."""

from __future__ import annotations

import numpy as np

from training.baselines import Ridge, baseline_metrics, pooled
from training.data import Dataset, Sample
from training.default_model import source_metrics


def _voice_split(name: str, n: int, rng: np.random.Generator, w: np.ndarray) -> Dataset:
    samples = []
    for i in range(n):
        x = rng.normal(size=(int(rng.integers(20, 40)), 3)).astype(np.float32) + rng.normal(size=3)
        label = float(pooled(Sample("", {"audio": x}, 0.0), "audio", "mean_std") @ w)
        samples.append(Sample(f"{name}/{i}", {"audio": x}, label, meta={"source": "emodb"}))
    return Dataset(name, samples, {"audio": 3})


def test_ridge_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    w = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    for standardize in (True, False):  # False: raw-scale penalty, as `fine bench text` uses it
        r = Ridge(0.1, standardize=standardize).fit(x, x @ w + 4.0)
        assert np.allclose(r.predict(x), x @ w + 4.0, atol=0.05)


def test_ridge_baseline_beats_the_constant_on_learnable_labels() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=6)
    splits = {s: _voice_split(s, n, rng, w) for s, n in (("train", 120), ("valid", 40), ("test", 60))}
    m = baseline_metrics(splits, "emodb", lambda p, y: source_metrics("emodb", p, y))
    assert m["ridge"]["Corr"] > 0.95 and m["constant"]["Corr"] == 0.0
    assert m["ridge"]["MAE"] < 0.3 * m["constant"]["MAE"]
    assert m["ridge"]["alpha"] in (0.1, 1.0)  # chosen on valid: little penalty for noise-free labels
