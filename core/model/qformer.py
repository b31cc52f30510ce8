"""Mixture of Q-Formers (MoQ), one per modality (METHOD.md §1.2).

Each expert is a small Q-Former: L learnable query tokens that self-attend, cross-attend to the projected
modality sequence (key padding applied) and pass an FFN, for ``num_blocks`` blocks. All experts of a
modality run as one batched computation (weights carry a leading expert axis), and the cross-attention
keys/values of the sequence are projected once per block and shared by the experts, which keeps long
sequences cheap. A router (softmax over experts, fed by the masked mean of the sequence) mixes the
experts densely: no data-dependent control flow, so the graph exports cleanly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from core.config import MoQConfig
from core.model.layers import ExpertLayerNorm, ExpertLinear, masked_mean


class QFormerBlock(nn.Module):
    """Self-attention over queries, cross-attention to the sequence, FFN; pre-norm, E experts at once."""

    def __init__(self, d: int, heads: int, experts: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.norm_sa = ExpertLayerNorm(experts, d)
        self.qkv = ExpertLinear(experts, d, 3 * d)
        self.out_sa = ExpertLinear(experts, d, d)
        self.norm_ca = ExpertLayerNorm(experts, d)
        self.q_ca = ExpertLinear(experts, d, d)
        self.kv_ca = nn.Linear(d, 2 * d)  # shared by experts: the sequence is projected once
        self.out_ca = ExpertLinear(experts, d, d)
        self.norm_ff = ExpertLayerNorm(experts, d)
        self.ff1 = ExpertLinear(experts, d, 4 * d)
        self.ff2 = ExpertLinear(experts, 4 * d, d)
        self.drop = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:  # (b, E, n, d) -> (b, E, H, n, dh)
        b, e, n, _ = x.shape
        return x.view(b, e, n, self.h, self.dh).transpose(2, 3)

    def _merge(self, x: Tensor) -> Tensor:  # (b, E, H, n, dh) -> (b, E, n, d)
        b, e, _, n, _ = x.shape
        return x.transpose(2, 3).reshape(b, e, n, self.h * self.dh)

    def forward(self, h: Tensor, kv_seq: Tensor, key_bias: Tensor) -> Tensor:
        """h: (b, E, q, d) queries; kv_seq: (b, t, d) normed sequence; key_bias: (b, 1, 1, 1, t) 0/-inf."""
        scale = 1.0 / math.sqrt(self.dh)
        # self-attention among the q query tokens of each expert
        q, k, v = self.qkv(self.norm_sa(h)).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (b, E, H, q, dh)
        att = torch.softmax(torch.einsum("behqd,behkd->behqk", q, k) * scale, dim=-1)
        h = h + self.drop(self.out_sa(self._merge(torch.einsum("behqk,behkd->behqd", att, v))))
        # cross-attention: queries of every expert attend to the same projected sequence
        b, t, _ = kv_seq.shape
        kc, vc = self.kv_ca(kv_seq).chunk(2, dim=-1)
        kc = kc.view(b, t, self.h, self.dh).transpose(1, 2)  # (b, H, t, dh)
        vc = vc.view(b, t, self.h, self.dh).transpose(1, 2)
        qc = self._heads(self.q_ca(self.norm_ca(h)))  # (b, E, H, q, dh)
        scores = torch.einsum("behqd,bhtd->behqt", qc, kc) * scale + key_bias
        att = torch.softmax(scores, dim=-1)
        h = h + self.drop(self.out_ca(self._merge(torch.einsum("behqt,bhtd->behqd", att, vc))))
        # feed-forward
        h = h + self.drop(self.ff2(self.drop(torch.nn.functional.gelu(self.ff1(self.norm_ff(h))))))
        return h


class MixtureOfQFormers(nn.Module):
    """``x_hat = Σ_e g_e · QF_e(x)``: (b, t, d) sequence -> (b, q, d) query tokens, plus gates (b, E)."""

    def __init__(self, d: int, cfg: MoQConfig) -> None:
        super().__init__()
        self.experts = cfg.experts
        self.queries = nn.Parameter(torch.randn(self.experts, cfg.num_queries, d) * 0.02)
        self.seq_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            QFormerBlock(d, cfg.num_heads, self.experts, cfg.dropout) for _ in range(cfg.num_blocks)
        )
        self.out_norm = nn.LayerNorm(d)
        self.router = nn.Linear(d, self.experts) if self.experts > 1 else None

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        kv = self.seq_norm(x)
        neg = torch.finfo(x.dtype).min
        key_bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, neg)
        key_bias = key_bias[:, None, None, None, :]  # (b, 1, 1, 1, t)
        h = self.queries.unsqueeze(0).expand(b, -1, -1, -1)  # (b, E, q, d)
        for block in self.blocks:
            h = block(h, kv, key_bias)
        h = self.out_norm(h)
        if self.router is None:
            gates = torch.ones(b, 1, dtype=x.dtype, device=x.device)
        else:
            gates = torch.softmax(self.router(masked_mean(x, mask)), dim=-1)  # (b, E)
        return torch.einsum("be,beqd->bqd", gates, h), gates
