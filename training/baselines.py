"""Simple baselines measured beside the default model, on the same samples in the same run.

A model number means little without one: the words branch is compared with a ridge regression on the same
frozen text embeddings (mean-pooled), the voice branch with a ridge on the mean and std of the same voice
features, and every source with the constant answer (the train-label mean, whose sign gives the majority
class). The ridge's penalty is chosen on the valid split of the same source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import Dataset, Sample

ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class BaselineSpec:
    """Which samples train and test a baseline, and how a sample becomes one feature vector."""

    train_source: str
    modality: str
    pooling: str  # "mean" or "mean_std"


SPECS: dict[str, BaselineSpec] = {
    "mosi": BaselineSpec("mosi", "text", "mean"),
    "meld": BaselineSpec("meld", "text", "mean"),
    "emodb": BaselineSpec("emodb", "audio", "mean_std"),
    "paa": BaselineSpec("emodb", "audio", "mean_std"),  # cross-corpus: the EmoDB-trained ridge
}


def pooled(sample: Sample, modality: str, pooling: str) -> np.ndarray:
    x = np.asarray(sample.features[modality], dtype=np.float64)
    return np.concatenate([x.mean(0), x.std(0)]) if pooling == "mean_std" else x.mean(0)


class Ridge:
    """Closed-form ridge regression with an intercept; on standardised inputs unless ``standardize`` is
    off (then it is sklearn's ``Ridge(alpha)``: centred inputs, raw scale)."""

    def __init__(self, alpha: float, standardize: bool = True) -> None:
        self.alpha = alpha
        self.standardize = standardize

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        self.mu = x.mean(0)
        self.sd = x.std(0) + 1e-8 if self.standardize else np.ones(x.shape[1])
        z = (x - self.mu) / self.sd
        self.y0 = float(y.mean())
        self.w = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ (y - self.y0))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mu) / self.sd) @ self.w + self.y0


def _xy(samples: list[Sample], spec: BaselineSpec) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([pooled(s, spec.modality, spec.pooling) for s in samples])
    return x, np.array([s.label for s in samples], dtype=np.float64)


def _of(data: Dataset, source: str) -> list[Sample]:
    return [
        s for s in data.samples if s.meta.get("source") == source and "#" not in s.id
    ]  # no oversampled copies


def ridge_predictions(splits: dict[str, Dataset], source: str) -> tuple[np.ndarray, float] | None:
    """Test predictions of the ridge baseline for ``source`` (penalty chosen on valid), and that penalty."""
    spec = SPECS.get(source)
    if spec is None:
        return None
    train, valid = (_of(splits[s], spec.train_source) for s in ("train", "valid"))
    test = _of(splits["test"], source)
    if not train or not valid or not test:
        return None
    xt, yt = _xy(train, spec)
    xv, yv = _xy(valid, spec)
    best = min(ALPHAS, key=lambda a: float(np.mean((Ridge(a).fit(xt, yt).predict(xv) - yv) ** 2)))
    model = Ridge(best).fit(np.concatenate([xt, xv]), np.concatenate([yt, yv]))
    return model.predict(_xy(test, spec)[0]), best


def constant(splits: dict[str, Dataset], source: str) -> float:
    """The train-label mean of ``source``'s training source (the constant baseline)."""
    spec = SPECS.get(source)
    train = _of(splits["train"], spec.train_source if spec else source)
    return float(np.mean([s.label for s in train])) if train else 0.0


def baseline_metrics(splits: dict[str, Dataset], source: str, score: Any) -> dict[str, dict[str, float]]:
    """``{"ridge": metrics, "constant": metrics}`` on ``source``'s test samples, with ``score(pred, y)``
    computing the same metrics as the model's."""
    test = _of(splits["test"], source)
    y = np.array([s.label for s in test], dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    ridge = ridge_predictions(splits, source)
    if ridge is not None:
        out["ridge"] = {**score(ridge[0], y), "alpha": ridge[1]}
    out["constant"] = score(np.full_like(y, constant(splits, source)), y)
    return out
