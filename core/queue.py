"""Dynamic Contrastive Queue and the ACCon loss (docs/METHOD.md §2, ``L_CL``).

The queue keeps, per label class (sign of the label: negative / neutral / positive, or negative /
non-negative with two classes), a FIFO of detached, L2-normalised fused representations with their
continuous labels. State lives in registered buffers, so it moves with ``.to()`` and is saved with
``state_dict()`` (safetensors-compatible).

ACCon (angle-compensated supervised contrastive loss) over batch ∪ queue: positives share the class and
use the plain cosine ``cos θ``; a negative's angle is shifted by ``φ = (1 − |Δy| / max_interval)·π`` and
contributes ``cos(θ + φ)`` to the denominator. Equivalently each negative is drawn towards the angle
``ψ = π·|Δy| / max_interval`` from the anchor: a label-far negative (ψ → π) is pushed hard to the
opposite side, a label-near one (ψ → 0) barely at all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def label_class(labels: Tensor, num_classes: int) -> Tensor:
    """3 classes: 0 negative, 1 neutral (== 0), 2 positive. 2 classes: 0 negative, 1 non-negative."""
    if num_classes == 3:
        return (torch.sign(labels) + 1).long()
    return (labels >= 0).long()


class DynamicContrastiveQueue(nn.Module):
    feats: Tensor  # (C, K, dim)
    labels: Tensor  # (C, K)
    ptr: Tensor  # (C,) next write slot per class
    count: Tensor  # (C,) filled slots per class

    def __init__(self, dim: int, size: int = 256, num_classes: int = 3) -> None:
        super().__init__()
        self.dim, self.size, self.num_classes = dim, size, num_classes
        self.register_buffer("feats", torch.zeros(num_classes, size, dim))
        self.register_buffer("labels", torch.zeros(num_classes, size))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, feats: Tensor, labels: Tensor) -> None:
        """Push detached, L2-normalised ``feats (n, dim)``; each class's FIFO overwrites its oldest."""
        feats = nn.functional.normalize(feats.detach().float(), dim=-1)
        classes = label_class(labels.detach(), self.num_classes)
        for c in range(self.num_classes):
            sel = classes == c
            x, y = feats[sel][-self.size :], labels.detach()[sel][-self.size :].float()
            n = x.shape[0]
            if n == 0:
                continue
            idx = (self.ptr[c] + torch.arange(n, device=x.device)) % self.size
            self.feats[c, idx] = x
            self.labels[c, idx] = y
            self.ptr[c] = (self.ptr[c] + n) % self.size
            self.count[c] = torch.clamp(self.count[c] + n, max=self.size)

    def contents(self) -> tuple[Tensor, Tensor]:
        """All stored entries ``(n, dim)`` and labels ``(n,)`` (oldest first within each class)."""
        feats, labels = [], []
        for c in range(self.num_classes):
            n = int(self.count[c])
            if n == 0:
                continue
            order = (self.ptr[c] - n + torch.arange(n, device=self.feats.device)) % self.size
            feats.append(self.feats[c, order])
            labels.append(self.labels[c, order])
        if not feats:
            return self.feats.new_zeros(0, self.dim), self.labels.new_zeros(0)
        return torch.cat(feats), torch.cat(labels)


def accon_loss(
    anchors: Tensor,
    labels: Tensor,
    bank: Tensor | None = None,
    bank_labels: Tensor | None = None,
    num_classes: int = 3,
    temperature: float = 0.07,
    max_interval: float = 6.0,
) -> Tensor:
    """ACCon over ``anchors (b, d)`` (with grad) against batch ∪ ``bank (n, d)`` (detached).

    Anchors without any positive are skipped; returns 0 when no anchor has one.
    """
    z = nn.functional.normalize(anchors, dim=-1)
    cand, cand_y = z, labels
    b = z.shape[0]
    not_self = ~torch.eye(b, dtype=torch.bool, device=z.device)
    if bank is not None and bank.shape[0] > 0:
        assert bank_labels is not None
        cand = torch.cat([z, nn.functional.normalize(bank.detach(), dim=-1)])
        cand_y = torch.cat([labels, bank_labels.to(labels.dtype)])
        not_self = torch.cat([not_self, torch.ones(b, bank.shape[0], dtype=torch.bool, device=z.device)], 1)
    cos = (z @ cand.T).clamp(-1 + 1e-6, 1 - 1e-6)  # (b, n)
    ca, cc = label_class(labels, num_classes), label_class(cand_y, num_classes)
    pos = (ca[:, None] == cc[None, :]) & not_self
    neg = ca[:, None] != cc[None, :]
    phi = (1.0 - (labels[:, None] - cand_y[None, :]).abs() / max_interval).clamp(0.0, 1.0) * math.pi
    sim = torch.where(neg, torch.cos(torch.acos(cos) + phi), cos)
    logits = (sim / temperature).masked_fill(~(pos | neg), float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return anchors.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has])
    return per_anchor.mean()
