"""Shapley contributions (docs/METHOD.md §7): efficiency, brute-force agreement, exact zeros for absent."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
import torch

from core.config import MODALITIES
from export import shapley
from export.io import batch_to_feeds, feeds_to_tensors
from export.runtime.torch_runner import TorchRunner
from tests.export.conftest import make_batch


def brute_force(value, players: int = 3) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Average marginal contribution over all player orderings (the definition, not the formula)."""
    phi = np.zeros(players)
    orders = list(permutations(range(players)))
    for order in orders:
        coalition = [False] * players
        before = value(tuple(coalition))
        for p in order:
            coalition[p] = True
            after = value(tuple(coalition))
            phi[p] += after - before
            before = after
    return phi / len(orders)


def test_subsets_are_the_8_masks_in_bit_order() -> None:
    assert shapley.SUBSETS.shape == (8, 3)
    assert not shapley.SUBSETS[shapley.EMPTY].any() and shapley.SUBSETS[shapley.FULL].all()
    assert len({tuple(r) for r in shapley.SUBSETS}) == 8


def test_expand_presence_is_subset_major_and_respects_absence() -> None:
    presence = np.array([[1, 1, 1], [1, 0, 1]], dtype=bool)
    exp = shapley.expand_presence(presence)
    assert exp.shape == (16, 3)
    for k in range(8):
        np.testing.assert_array_equal(exp[2 * k], shapley.SUBSETS[k])
        np.testing.assert_array_equal(exp[2 * k + 1], shapley.SUBSETS[k] & presence[1])
    with pytest.raises(ValueError, match="shape"):
        shapley.expand_presence(np.ones((2, 4), dtype=bool))


def test_combine_matches_brute_force_on_an_arbitrary_game() -> None:
    rng = np.random.default_rng(0)
    b = 5
    table = rng.standard_normal((8, b))  # v(S) for every subset and sample
    phi = shapley.combine(table.reshape(-1), np.ones((b, 3), dtype=bool))
    for i in range(b):

        def value(coalition: tuple[bool, ...], i: int = i) -> float:
            k = sum(1 << m for m, inside in enumerate(coalition) if inside)
            return float(table[k, i])

        np.testing.assert_allclose(phi[i], brute_force(value), atol=1e-12)
        assert abs(phi[i].sum() - (table[shapley.FULL, i] - table[shapley.EMPTY, i])) < 1e-12


def test_model_contributions_efficiency_and_brute_force(small_model) -> None:  # type: ignore[no-untyped-def]
    cfg = small_model.config
    batch = make_batch(cfg, 6, {"text": 7, "audio": 11, "vision": 4}, seed=3)
    runner = TorchRunner(small_model)
    pred = runner.infer(batch)
    err = np.abs(pred.contributions.sum(1) - (pred.score.astype(np.float64) - pred.baseline)).max()
    assert err < 1e-5, err
    # Brute force: one model call per coalition, as separate batches.
    feeds = batch_to_feeds(batch, "embeddings")
    for i in range(batch.batch_size):

        def value(coalition: tuple[bool, ...], i: int = i) -> float:
            one = {k: v[i : i + 1] for k, v in feeds.items()}
            one["presence"] = np.array([coalition], dtype=bool)
            with torch.inference_mode():
                score, _ = small_model.predict(*feeds_to_tensors(one))
            return float(score[0])

        np.testing.assert_allclose(pred.contributions[i], brute_force(value), atol=2e-6)
    assert np.abs(pred.contributions).max() > 1e-4  # a real signal, not all zeros


def test_absent_modality_contributes_exactly_zero(small_model) -> None:  # type: ignore[no-untyped-def]
    cfg = small_model.config
    presence = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=bool)
    batch = make_batch(cfg, 5, {"text": 6, "audio": 9, "vision": 3}, seed=4, presence=presence)
    # A present flag with no valid step is absent too (effective presence).
    batch.masks["vision"][4] = False
    pred = TorchRunner(small_model).infer(batch)
    expected = presence.copy()
    expected[4, 2] = False
    np.testing.assert_array_equal(pred.presence, expected)
    assert (pred.contributions[~expected] == 0.0).all()
    assert (np.abs(pred.contributions[expected]) > 0).all()


def test_absent_modality_gives_identical_model_outputs(small_model) -> None:  # type: ignore[no-untyped-def]
    """f(S ∪ {m}) == f(S) bit for bit when m is absent: the explicit zero in combine is only a guard."""
    cfg = small_model.config
    presence = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=bool)
    batch = make_batch(cfg, 3, {"text": 5, "audio": 8, "vision": 6}, seed=5, presence=presence)
    feeds = batch_to_feeds(batch, "embeddings")
    expanded = {k: shapley.tile_rows(v) for k, v in feeds.items() if k != "presence"}
    expanded["presence"] = shapley.expand_presence(feeds["presence"])
    scores, _ = TorchRunner(small_model).run_feeds(expanded)
    f = scores.reshape(8, 3)
    for m in range(len(MODALITIES)):
        for k in range(8):
            if k & (1 << m):
                continue
            for i in np.flatnonzero(~presence[:, m]):
                assert f[k | (1 << m), i] == f[k, i]
