"""Helpers for tests that iterate over datasets."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.batch import ModalityBatch
from training.data import Dataset, batch_order, collate


def iterate_batches(
    data: Dataset, batch_size: int, shuffle: bool, generator: np.random.Generator | None = None
) -> Iterator[ModalityBatch]:
    """The batches of ``data`` in :func:`training.data.batch_order`'s order."""
    for idx in batch_order(data, batch_size, shuffle, generator):
        yield collate([data.samples[i] for i in idx], data.feature_dims)
