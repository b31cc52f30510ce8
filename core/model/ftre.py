"""Factorized task-relevant encoder (FTRE), docs/METHOD.md §1.3.

Per modality: MLP encoders split the Q-Former tokens ``x̂`` into a shared part ``s`` and a unique part
``u``; two more MLPs filter task noise out of each, giving ``str`` (shared task-relevant) and ``utr``
(unique task-relevant). The modality's output tokens are ``concat(str, utr)`` mapped back to ``d``.
The reconstruction decoder and the MI critics are training-only and live in ``core.losses``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.config import FTREConfig
from core.model.layers import MLP


@dataclass
class FTREOutput:
    tokens: Tensor  # (b, q, d) what the fusion Transformer sees
    shared: Tensor | None = None  # s   (b, q, f)
    unique: Tensor | None = None  # u   (b, q, f)
    shared_tr: Tensor | None = None  # str (b, q, f)
    unique_tr: Tensor | None = None  # utr (b, q, f)


class FTRE(nn.Module):
    def __init__(self, d: int, cfg: FTREConfig) -> None:
        super().__init__()
        self.enabled = cfg.enabled
        f = cfg.feat_dim
        if self.enabled:
            self.enc_shared = MLP(d, cfg.hidden, f)
            self.enc_unique = MLP(d, cfg.hidden, f)
            self.task_shared = MLP(f, cfg.hidden, f)
            self.task_unique = MLP(f, cfg.hidden, f)
            self.out = nn.Sequential(nn.Linear(2 * f, d), nn.LayerNorm(d))
        else:  # ablation: no factorisation
            self.out = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))

    def forward(self, x_hat: Tensor) -> FTREOutput:
        if not self.enabled:
            return FTREOutput(tokens=self.out(x_hat))
        s, u = self.enc_shared(x_hat), self.enc_unique(x_hat)
        s_tr, u_tr = self.task_shared(s), self.task_unique(u)
        tokens = self.out(torch.cat([s_tr, u_tr], dim=-1))
        return FTREOutput(tokens=tokens, shared=s, unique=u, shared_tr=s_tr, unique_tr=u_tr)
