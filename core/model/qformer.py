"""Mixture of Q-Formers (MoQ), one per modality (METHOD.md §1.2).

Each expert is a small Q-Former: L learnable query tokens that self-attend, cross-attend to the projected
modality sequence (key padding applied) and pass an FFN, for ``num_blocks`` blocks. All experts of a
modality run as one batched computation (weights carry a leading expert axis), and the cross-attention
keys/values of the sequence are projected once per block, straight into head-major layout, and shared by
the experts, which keeps long sequences cheap. A router (softmax over experts, fed by the masked mean of the sequence) mixes the
experts densely: no data-dependent control flow, so the graph exports cleanly.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import MoQConfig
from core.model.layers import ExpertLayerNorm, ExpertLinear, fold_norm, masked_mean, normed_linear


class QFormerBlock(nn.Module):
    """Self-attention over queries, cross-attention to the sequence, FFN; pre-norm, E experts at once.

    Query tokens use the expert-first layout ``(E, b, q, d)`` so that every per-expert linear map is one
    batched GEMM; for cross-attention the queries of all experts are folded into one query axis
    ``(H, b, E·q, dh)`` against the shared keys, so no key/value tensor is ever copied per expert.

    The query axis may have batch size 1 while the sequence has b: the first block receives the learned
    queries themselves, identical for every sample, so its self-attention and cross-attention query
    projection run once instead of b times (exact; about a fifth of the MoQ's GEMM work at the defaults,
    and the part an ONNX optimiser folds to a constant). The result broadcasts to b at the first residual
    that involves the sequence.

    Attention is written out (no fused kernel) in layouts chosen for CPU inference; each rewrite is exact
    up to float rounding (tests/core/test_model.py checks the block against a plain per-expert reference):

    - keys and values are projected straight into head-major ``(H, b, t, dh)`` (a weight reshape, free
      once exported), so the sequence, the largest tensor of the block, is never transposed;
    - the value bias moves past the attention into ``out_ca``'s bias (softmax rows sum to 1), and the
      key bias, which shifts each query's scores by a constant that softmax ignores, is added only in
      training (where it keeps its exact-zero gradient and the checkpoint layout stays the same);
    - the 1/√dh scale is folded into the query projection, and the key padding mask arrives as an
      additive bias computed once per sequence for all blocks (no fully masked row exists: the caller
      gives absent samples a dummy valid key).
    """

    def __init__(self, d: int, heads: int, experts: int, dropout: float, ffn_mult: int = 4) -> None:
        super().__init__()
        # sizes as Python ints: an exported graph then reshapes by constants, not by computed shapes
        self.e, self.d, self.h, self.dh = experts, d, heads, d // heads
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

    def keys_values(self, seq: Tensor) -> tuple[Tensor, Tensor]:
        """This block's keys and values of the normed sequence ``(b, t, d)``, each ``(H, b, t, dh)``,
        without the value bias (see :meth:`forward`) and, outside training, without the key bias."""
        b, d, hh, dh = seq.shape[0], self.d, self.h, self.dh
        weight = self.kv_ca.weight.view(2 * hh, dh, d).transpose(1, 2)  # (2H, d, dh): rows are (k|v, head)
        flat = seq.reshape(1, -1, d)
        k = torch.matmul(flat, weight[:hh]).view(hh, b, -1, dh)
        v = torch.matmul(flat, weight[hh:]).view(hh, b, -1, dh)
        if self.training:
            k = k + self.kv_ca.bias[:d].view(hh, 1, 1, dh)
        return k, v

    def forward(self, h: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor) -> Tensor:
        """h: (E, b or 1, q, d) queries; k, v: (H, b, t, dh) from :meth:`keys_values`; attn_bias:
        (1, b, E·q or 1, t) additive key mask (0 valid, a large negative number padding).
        Returns (E, b, q, d)."""
        e, d, hh, dh, q = self.e, self.d, self.h, self.dh, h.shape[2]
        # self-attention among the q query tokens of each expert, in (E, H, hb, q, dh); keys and values
        # straight into head-major layout, biases and scale handled as in the cross-attention
        weight, bias = fold_norm(self.norm_sa, self.qkv)  # (E, d, 3d), (E, 1, 3d)
        x = F.layer_norm(h, (d,)).reshape(e, -1, d)
        s = dh**-0.5
        qs = torch.baddbmm(bias[..., :d] * s, x, weight[..., :d] * s).view(e, -1, q, hh, dh)
        kv_weight = weight[..., d:].view(e, d, 2 * hh, dh).transpose(1, 2)  # (E, 2H, d, dh)
        ks = torch.matmul(x.unsqueeze(1), kv_weight[:, :hh]).view(e, hh, -1, q, dh)
        vs = torch.matmul(x.unsqueeze(1), kv_weight[:, hh:]).view(e, hh, -1, q, dh)
        if self.training:
            ks = ks + bias[:, 0, d : 2 * d].view(e, hh, 1, 1, dh)
        scores = torch.matmul(qs.permute(0, 3, 1, 2, 4), ks.transpose(-1, -2))  # (E, H, hb, q, q)
        att = torch.matmul(scores.softmax(-1), vs).permute(0, 2, 3, 1, 4).reshape(e, -1, d)
        out_bias = self.out_sa.bias.unsqueeze(1) + torch.bmm(bias[..., 2 * d :], self.out_sa.weight)
        h = h + self.drop(torch.baddbmm(out_bias, att, self.out_sa.weight).view(e, -1, q, d))
        # cross-attention: every expert's queries attend to the same keys; scale folded into the queries
        qc = normed_linear(h, self.norm_ca, self.q_ca, scale=dh**-0.5)
        qc = qc.view(e, -1, q, hh, dh).permute(3, 1, 0, 2, 4).reshape(hh, -1, e * q, dh)
        scores = torch.matmul(qc, k.transpose(-1, -2)) + attn_bias  # (H, b, E·q, t)
        att = torch.matmul(scores.softmax(-1), v).view(hh, -1, e, q, dh).permute(2, 1, 3, 0, 4)
        v_bias = self.kv_ca.bias[d:]  # Σ_t p_t (v_t + c) = Σ_t p_t v_t + c: into out_ca's bias
        out_bias = self.out_ca.bias + torch.matmul(v_bias, self.out_ca.weight)  # (E, d)
        att = torch.baddbmm(out_bias.unsqueeze(1), att.reshape(e, -1, d), self.out_ca.weight)
        h = h + self.drop(att.view(e, -1, q, d))  # broadcasts (E, 1, q, d) queries to (E, b, q, d)
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

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        e, q, _ = self.queries.shape
        seq = self.seq_norm(x)
        # additive key mask, built once for every block, already the size of the scores' last two axes
        # (a broadcast over whole (E·q, t) planes is several times cheaper on CPU than one over rows)
        attn_bias = torch.zeros_like(x[..., 0]).masked_fill(~mask, torch.finfo(x.dtype).min)  # (b, t)
        attn_bias = attn_bias[None, :, None, :].expand(1, -1, e * q, -1)
        # (E, 1, q, d): the same for every sample until the first cross-attention
        h = self.queries.unsqueeze(1)
        if self.training:  # per-sample dropout masks in the first block, as with any other token
            h = h.expand(-1, b, -1, -1)
        for block in self.blocks:
            blk = cast(QFormerBlock, block)
            h = blk(h, *blk.keys_values(seq), attn_bias)
        h = self.out_norm(h)
        if self.router is None:
            gates = torch.ones(b, 1, dtype=x.dtype, device=x.device)
        else:
            gates = torch.softmax(self.router(masked_mean(x, mask)), dim=-1)  # (b, E)
        # Σ_e g_e h_e as a broadcast product and a sum over the leading axis (cheaper than einsum on CPU)
        return (gates.t()[:, :, None, None] * h).sum(0), gates
