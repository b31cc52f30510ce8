"""Fit FINE's per-feature input standardisation (``ModalityEncoder.in_mean``/``in_std``) on training data.

Live features mix scales (log-mel energies around -8 with a spread of 5, voicing probabilities in [0, 1],
landmark distances around 0.1): without standardisation the large dims drown the small ones in the input
projection. Statistics are over every valid frame of every sample where the modality is present.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from core.config import MODALITIES
from training.data import Dataset

log = logging.getLogger(__name__)

MIN_STD = 1e-3  # a constant feature stays as it is instead of being blown up


def input_stats(data: Dataset, modality: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std per feature of ``modality`` over ``data`` (float64 accumulation), or ``None`` when
    the modality has no frames or holds token ids."""
    total, sq, n = None, None, 0
    for s in data.samples:
        x = s.features.get(modality)
        if x is None or x.ndim != 2 or not x.shape[0]:
            continue
        x64 = np.asarray(x, dtype=np.float64)
        total = x64.sum(0) if total is None else total + x64.sum(0)
        sq = (x64**2).sum(0) if sq is None else sq + (x64**2).sum(0)
        n += x64.shape[0]
    if total is None or sq is None or n < 2:
        return None
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    return mean, np.maximum(std, MIN_STD)


def fit_input_norm(model: nn.Module, data: Dataset) -> dict[str, int]:
    """Set every modality encoder's ``in_mean``/``in_std`` from ``data``; returns frames used per modality.
    Models without these buffers (MMIM) are left alone."""
    used: dict[str, int] = {}
    encoders = getattr(model, "encoders", None)
    if encoders is None:
        return used
    for m in MODALITIES:
        if m not in encoders or not hasattr(encoders[m], "in_mean"):
            continue
        enc = encoders[m]
        stats = input_stats(data, m)
        if stats is None or stats[0].shape[0] != enc.in_mean.shape[0]:
            continue
        with torch.no_grad():
            enc.in_mean.copy_(torch.from_numpy(stats[0]).to(enc.in_mean.dtype))
            enc.in_std.copy_(torch.from_numpy(stats[1]).to(enc.in_std.dtype))
        used[m] = sum(s.features[m].shape[0] for s in data.samples if s.features.get(m) is not None)
    log.info("input standardisation fitted on %s frames", used)
    return used
