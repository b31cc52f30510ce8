"""The sample type every dataset loader produces, and batching into ``ModalityBatch``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.batch import ModalityBatch
from core.config import MODALITIES
from core.errors import FineError


@dataclass
class Sample:
    """One labelled segment.

    features[m]: ``(t, d)`` float32 array, ``(t,)`` int64 token ids for text when the model has a text
        encoder, or ``None`` when the modality is absent for this sample.
    """

    id: str
    features: dict[str, np.ndarray | None]
    label: float
    text: str | None = None
    group: str | None = None  # e.g. the video id, for grouped cross-validation
    meta: dict[str, object] = field(default_factory=dict)


@dataclass
class Dataset:
    """A named split of samples with the feature dims and label range it was built with."""

    name: str
    samples: list[Sample]
    feature_dims: dict[str, int]
    label_range: tuple[float, float] = (-3.0, 3.0)
    # FeatureProfile.to_dict() of the extractors that made the features (feature caches); None for data
    # whose features cannot be computed live. A trainer copies it into FineConfig.feature_profile.
    feature_profile: dict[str, object] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int], name: str | None = None) -> Dataset:
        samples = [self.samples[i] for i in indices]
        return Dataset(name or self.name, samples, self.feature_dims, self.label_range, self.feature_profile)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.float64)


def collate(samples: Sequence[Sample], feature_dims: dict[str, int]) -> ModalityBatch:
    seqs: dict[str, list[torch.Tensor | None]] = {m: [] for m in MODALITIES}
    for s in samples:
        for m in MODALITIES:
            x = s.features.get(m)
            seqs[m].append(None if x is None else torch.from_numpy(np.ascontiguousarray(x)))
    labels = torch.tensor([s.label for s in samples], dtype=torch.float32)
    return ModalityBatch.from_sequences(
        seqs, labels=labels, feature_dims=feature_dims, part_labels=part_labels(samples)
    )


def part_labels(samples: Sequence[Sample]) -> torch.Tensor | None:
    """``(b, 3)`` each modality's own label from ``meta["part_labels"]`` (cross-corpus pairs; NaN where
    a modality has none), or ``None`` when no sample of the batch has any."""
    rows = [s.meta.get("part_labels") for s in samples]
    if not any(rows):
        return None
    nan = float("nan")
    return torch.tensor(
        [[nan if v is None else float(v) for v in (r or (None,) * len(MODALITIES))] for r in rows],
        dtype=torch.float32,
    )


def sample_length(s: Sample) -> int:
    """Longest sequence of a sample (what padding a batch costs)."""
    return max((x.shape[0] for x in s.features.values() if x is not None), default=0)


def batch_order(
    data: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: np.random.Generator | None = None,
    bucket: bool = False,
) -> list[np.ndarray]:
    """Index arrays, one per batch. ``bucket=True`` groups similar lengths (less padding): with shuffling,
    a shuffled pool of 50 batches is sorted by length, cut into batches and the batches are shuffled;
    without shuffling, the whole split is sorted by length (predictions are put back in order by the caller)."""
    order = np.arange(len(data))
    rng = generator or np.random.default_rng()
    if shuffle:
        rng.shuffle(order)
    if bucket:
        lengths = np.array([sample_length(s) for s in data.samples])
        pool = batch_size * 50 if shuffle else len(order)
        chunks = [order[i : i + pool] for i in range(0, len(order), max(pool, 1))]
        order = (
            np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks]) if chunks else order
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket and shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def restrict_modalities(splits: dict[str, Dataset], keep: tuple[str, ...]) -> None:
    """Mark every modality not in ``keep`` absent (in place)."""
    for ds in splits.values():
        for s in ds.samples:
            for m in MODALITIES:
                if m not in keep:
                    s.features[m] = None


def pool_splits(splits: dict[str, Dataset]) -> Dataset:
    """The samples of train, valid and test (those present) as one dataset named ``all``."""
    pooled = [s for k in ("train", "valid", "test") if k in splits for s in splits[k].samples]
    ref = next(iter(splits.values()))
    return Dataset("all", pooled, ref.feature_dims, ref.label_range)


def grouped_folds(samples: list[Sample], k: int) -> list[list[int]]:
    """Indices of ``k`` folds; whole groups (videos) per fold, balanced by size, deterministic."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group or s.id, []).append(i)
    if len(groups) < k:
        raise FineError(f"--cv {k}: only {len(groups)} groups (videos) in the data")
    folds: list[list[int]] = [[] for _ in range(k)]
    for _, idx in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(folds, key=len).extend(idx)
    return [sorted(f) for f in folds]
