"""The model's input: per-modality sequences with padding masks and a ``(b, 3)`` presence tensor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import MODALITIES


@dataclass
class ModalityBatch:
    """One batch for FINE.

    features[m]: ``(b, t_m, d_m)`` float features, or ``(b, t)`` int64 token ids for text when the model
        has a text encoder.
    masks[m]:    ``(b, t_m)`` bool, True on valid (non-padded) steps.
    presence:    ``(b, 3)`` bool in ``MODALITIES`` order; False means the modality is absent for that
        sample (camera off, no face, silence). A present modality with no valid step counts as absent.
    labels:      optional ``(b,)`` float regression targets.
    part_labels: optional ``(b, 3)`` float: each modality's own label where a sample was assembled from
        separately labelled parts (a cross-corpus pair: a transcript, a voice and a face from different
        corpora, ``labels`` their mean); NaN where a modality has no label of its own. Training only.
    """

    features: dict[str, Tensor]
    masks: dict[str, Tensor]
    presence: Tensor
    labels: Tensor | None = None
    part_labels: Tensor | None = None

    def __post_init__(self) -> None:
        missing = [m for m in MODALITIES if m not in self.features or m not in self.masks]
        if missing:
            raise ValueError(f"ModalityBatch is missing features/masks for {missing}")
        b = self.presence.shape[0]
        if self.presence.shape != (b, len(MODALITIES)):
            raise ValueError(f"presence must have shape (b, 3), got {tuple(self.presence.shape)}")
        if self.part_labels is not None and self.part_labels.shape != self.presence.shape:
            raise ValueError(f"part_labels must have shape (b, 3), got {tuple(self.part_labels.shape)}")
        for m in MODALITIES:
            x, mask = self.features[m], self.masks[m]
            if x.shape[0] != b or mask.shape != x.shape[:2]:
                raise ValueError(
                    f"{m}: features {tuple(x.shape)} and mask {tuple(mask.shape)} do not match batch {b}"
                )

    @property
    def batch_size(self) -> int:
        return int(self.presence.shape[0])

    def to(self, device: torch.device | str) -> ModalityBatch:
        return ModalityBatch(
            features={m: x.to(device) for m, x in self.features.items()},
            masks={m: x.to(device) for m, x in self.masks.items()},
            presence=self.presence.to(device),
            labels=None if self.labels is None else self.labels.to(device),
            part_labels=None if self.part_labels is None else self.part_labels.to(device),
        )

    def with_presence(self, presence: Tensor) -> ModalityBatch:
        return ModalityBatch(dict(self.features), dict(self.masks), presence, self.labels, self.part_labels)

    def with_labels(self, labels: Tensor) -> ModalityBatch:
        return ModalityBatch(dict(self.features), dict(self.masks), self.presence, labels, self.part_labels)

    @classmethod
    def from_sequences(
        cls,
        sequences: Mapping[str, list[Tensor | None]],
        labels: Tensor | None = None,
        feature_dims: Mapping[str, int] | None = None,
        part_labels: Tensor | None = None,
    ) -> ModalityBatch:
        """Pad lists of per-sample ``(t, d)`` tensors (``None`` = absent) into a batch."""
        b = len(next(iter(sequences.values())))
        feats, masks = {}, {}
        presence = torch.zeros(b, len(MODALITIES), dtype=torch.bool)
        for i_m, m in enumerate(MODALITIES):
            seqs = sequences[m]
            if len(seqs) != b:
                raise ValueError(f"{m}: {len(seqs)} sequences for a batch of {b}")
            present = [s for s in seqs if s is not None and s.shape[0] > 0]
            if present:
                tail = tuple(present[0].shape[1:])
                dtype = present[0].dtype
            elif feature_dims is not None:
                tail, dtype = (feature_dims[m],), torch.float32
            else:
                raise ValueError(f"{m}: no sample has this modality and feature_dims was not given")
            t = max([s.shape[0] for s in present], default=1)
            x = torch.zeros((b, t, *tail), dtype=dtype)
            mask = torch.zeros(b, t, dtype=torch.bool)
            for i, s in enumerate(seqs):
                if s is not None and s.shape[0] > 0:
                    x[i, : s.shape[0]] = s
                    mask[i, : s.shape[0]] = True
                    presence[i, i_m] = True
            feats[m], masks[m] = x, mask
        return cls(feats, masks, presence, labels, part_labels)
