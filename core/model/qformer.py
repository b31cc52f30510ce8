"""Mixture of Q-Formers (MoQ), one per modality (METHOD.md §1.2).

Each expert is a small Q-Former: L learnable query tokens that self-attend, cross-attend to the projected
modality sequence (key padding applied) and pass an FFN, for ``num_blocks`` blocks. All experts of a
modality run as one batched computation (weights carry a leading expert axis), and the cross-attention
keys/values of the sequence are projected once (all blocks in one GEMM) and shared by the experts, which
keeps long sequences cheap. A router (softmax over experts, fed by the masked mean of the sequence) mixes the
experts densely: no data-dependent control flow, so the graph exports cleanly.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import MoQConfig
from core.model.layers import ExpertLayerNorm, ExpertLinear, masked_mean, normed_linear


class QFormerBlock(nn.Module):
    """Self-attention over queries, cross-attention to the sequence, FFN; pre-norm, E experts at once.

    Query tokens use the expert-first layout ``(E, b, q, d)`` so that every per-expert linear map is one
    batched GEMM; for cross-attention the queries of all experts are folded into one query axis
    ``(b, H, E·q, dh)`` against the shared keys, so no key/value tensor is ever copied per expert.

    The query axis may have batch size 1 while the sequence has b: the first block receives the learned
    queries themselves, identical for every sample, so its self-attention and cross-attention query
    projection run once instead of b times (exact; about a fifth of the MoQ's GEMM work at the defaults,
    and the part an ONNX optimiser folds to a constant). The result broadcasts to b at the first residual
    that involves the sequence.
    """

    def __init__(self, d: int, heads: int, experts: int, dropout: float, ffn_mult: int = 4) -> None:
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
        self.ff1 = ExpertLinear(experts, d, ffn_mult * d)
        self.ff2 = ExpertLinear(experts, ffn_mult * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, kv: Tensor, key_mask: Tensor) -> Tensor:
        """h: (E, b or 1, q, d) queries; kv: (2, b, H, t, dh) this block's keys and values of the
        sequence (``kv_ca`` applied by the caller, see :meth:`MixtureOfQFormers.project_sequence`);
        key_mask: (b, 1, 1, t) True = valid. Returns (E, b, q, d)."""
        e, hb, q, d = h.shape
        b = kv.shape[1]
        hh, dh = self.h, self.dh
        # self-attention among the q query tokens of each expert: (E·hb, H, q, dh)
        qkv = normed_linear(h, self.norm_sa, self.qkv).view(e * hb, q, 3, hh, dh).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (E·hb, H, q, dh)
        h = h + self.drop(self.out_sa(att.transpose(1, 2).reshape(e, hb, q, d)))
        # cross-attention: every expert's queries attend to the same projected sequence
        qc = normed_linear(h, self.norm_ca, self.q_ca).expand(e, b, q, d)
        qc = qc.reshape(e, b, q, hh, dh).permute(1, 3, 0, 2, 4).reshape(b, hh, e * q, dh)
        att = F.scaled_dot_product_attention(qc, kv[0], kv[1], attn_mask=key_mask)  # (b, H, E·q, dh)
        att = att.view(b, hh, e, q, dh).permute(2, 0, 3, 1, 4).reshape(e, b, q, d)
        h = h + self.drop(self.out_ca(att))  # broadcasts (E, 1, q, d) queries to (E, b, q, d)
        # feed-forward
        return h + self.drop(self.ff2(self.drop(F.gelu(normed_linear(h, self.norm_ff, self.ff1)))))


class MixtureOfQFormers(nn.Module):
    """``x_hat = Σ_e g_e · QF_e(x)``: (b, t, d) sequence -> (b, q, d) query tokens, plus gates (b, E)."""

    def __init__(self, d: int, cfg: MoQConfig) -> None:
        super().__init__()
        self.experts = cfg.experts
        self.queries = nn.Parameter(torch.randn(self.experts, cfg.num_queries, d) * 0.02)
        self.seq_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            QFormerBlock(d, cfg.num_heads, self.experts, cfg.dropout, cfg.ffn_mult)
            for _ in range(cfg.num_blocks)
        )
        self.out_norm = nn.LayerNorm(d)
        self.router = nn.Linear(d, self.experts) if self.experts > 1 else None

    def project_sequence(self, kv_seq: Tensor) -> Tensor:
        """Keys and values of every block from the normed sequence ``(b, t, d)`` in one GEMM (the blocks'
        ``kv_ca`` maps side by side): ``(blocks, 2, b, H, t, dh)``."""
        b, t, _ = kv_seq.shape
        blocks = [cast(QFormerBlock, blk) for blk in self.blocks]
        weight = torch.cat([blk.kv_ca.weight for blk in blocks])  # (blocks·2d, d)
        bias = torch.cat([blk.kv_ca.bias for blk in blocks])
        first = blocks[0]
        kv = F.linear(kv_seq, weight, bias).view(b, t, len(self.blocks), 2, first.h, first.dh)
        return kv.permute(2, 3, 0, 4, 1, 5)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        kv = self.seq_norm(x)
        key_mask = mask[:, None, None, :]  # (b, 1, 1, t)
        h = self.queries.unsqueeze(
            1
        )  # (E, 1, q, d): the same for every sample until the first cross-attention
        if self.training:  # per-sample dropout masks in the first block, as with any other token
            h = h.expand(-1, b, -1, -1)
        for block, block_kv in zip(self.blocks, self.project_sequence(kv), strict=True):
            h = block(h, block_kv, key_mask)
        h = self.out_norm(h)
        if self.router is None:
            gates = torch.ones(b, 1, dtype=x.dtype, device=x.device)
        else:
            gates = torch.softmax(self.router(masked_mean(x, mask)), dim=-1)  # (b, E)
        return torch.einsum("be,ebqd->bqd", gates, h), gates
