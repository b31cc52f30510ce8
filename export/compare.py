"""Comparator: run several runners on the same batches and report the largest output differences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.batch import ModalityBatch
from export.io import PREDICTION_FIELDS
from export.runtime.base import Runner


@dataclass
class Comparison:
    reference: str
    other: str
    max_abs: dict[str, float] = field(default_factory=dict)  # per output name, over all batches

    @property
    def worst(self) -> float:
        return max(self.max_abs.values(), default=0.0)

    def ok(self, atol: float) -> bool:
        return self.worst <= atol

    def __str__(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs.items())
        return f"{self.other} vs {self.reference}: max |Δ| {diffs}"


def compare_runners(
    reference: Runner, others: list[Runner], batches: list[ModalityBatch], contributions: bool = True
) -> list[Comparison]:
    """Max absolute difference of every :class:`~export.io.Prediction` field, each runner vs ``reference``."""
    results = [Comparison(reference.describe(), r.describe()) for r in others]
    for batch in batches:
        ref = reference.infer(batch, contributions)
        for runner, res in zip(others, results):
            got = runner.infer(batch, contributions)
            for name in PREDICTION_FIELDS:
                a, b = getattr(ref, name), getattr(got, name)
                if a is None or b is None:
                    continue
                err = float(
                    np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0)
                )
                res.max_abs[name] = max(res.max_abs.get(name, 0.0), err)
    return results
