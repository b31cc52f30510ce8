"""Exact Shapley values of the three modalities from the 8 presence subsets (docs/METHOD.md §7).

The single place where contributions are computed; every runner uses it. A runner evaluates the model
once on a batch of ``8·b`` rows, row ``k·b + i`` being sample ``i`` with presence
``presence_i AND SUBSETS[k]``, and :func:`combine` turns the ``(8·b,)`` scores into ``(b, 3)``
contributions::

    φ_m = Σ_{S ⊆ M\\{m}} |S|! (n−1−|S|)! / n! · (f(S ∪ {m}) − f(S))

``Σ_m φ_m = f(all) − f(none)``
(efficiency). A modality that is absent in the input contributes exactly 0: the model replaces it by
its learned absent tokens, so ``f(S ∪ {m}) == f(S)`` row for row; :func:`combine` also zeroes those
pairs explicitly, so the guarantee holds on backends whose kernels are not bitwise batch-invariant.
"""

from __future__ import annotations

import math

import numpy as np

from core.config import MODALITIES

N_MODALITIES = len(MODALITIES)

# (8, 3) bool: subset k contains modality m iff bit m of k is set. Row 0 = none, row 7 = all.
SUBSETS: np.ndarray = np.array(
    [[bool(k >> m & 1) for m in range(N_MODALITIES)] for k in range(2**N_MODALITIES)], dtype=bool
)
FULL = 2**N_MODALITIES - 1
EMPTY = 0


def _weight(size: int, n: int = N_MODALITIES) -> float:
    """Shapley weight of a coalition of ``size`` players not containing the one being valued."""
    return math.factorial(size) * math.factorial(n - 1 - size) / math.factorial(n)


def expand_presence(presence: np.ndarray) -> np.ndarray:
    """``(b, 3)`` bool -> ``(8·b, 3)`` bool, subset-major: rows ``k·b .. k·b+b-1`` use ``SUBSETS[k]``."""
    presence = np.asarray(presence, dtype=bool)
    if presence.ndim != 2 or presence.shape[1] != N_MODALITIES:
        raise ValueError(f"presence must have shape (b, {N_MODALITIES}), got {presence.shape}")
    return (SUBSETS[:, None, :] & presence[None, :, :]).reshape(-1, N_MODALITIES)


def tile_rows(x: np.ndarray, times: int = 2**N_MODALITIES) -> np.ndarray:
    """Repeat a ``(b, ...)`` array subset-major to ``(times·b, ...)``, matching :func:`expand_presence`."""
    return np.concatenate([x] * times, axis=0)


def combine(scores: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """``scores (8·b,)`` from a subset-major expanded batch, ``presence (b, 3)`` effective presence ->
    contributions ``(b, 3)`` float64.

    Pairs ``(S, S ∪ {m})`` with ``m`` absent are identical inputs; their difference is set to exactly 0.
    """
    presence = np.asarray(presence, dtype=bool)
    b = presence.shape[0]
    f = np.asarray(scores, dtype=np.float64).reshape(2**N_MODALITIES, b)  # (8, b)
    phi = np.zeros((b, N_MODALITIES), dtype=np.float64)
    for m in range(N_MODALITIES):
        bit = 1 << m
        for k in range(2**N_MODALITIES):
            if k & bit:
                continue
            diff = np.where(presence[:, m], f[k | bit] - f[k], 0.0)
            phi[:, m] += _weight(int(SUBSETS[k].sum())) * diff
    return phi
