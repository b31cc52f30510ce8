"""The Mixture of Q-Formers written plainly: what :mod:`core.model.qformer` computes, in textbook form.

:class:`~core.model.qformer.QFormerBlock` and :func:`~core.model.qformer.mixture_of_qformers` are written
for CPU latency (LayerNorm affines folded into the next map, the experts of all modalities stacked into
one batched GEMM, head-major layouts, a key mask built once). The functions here compute the same thing
from the same parameters, one expert at a time, the way docs/METHOD.md §1.2 states it. They are the
reference the fast path is tested against (tests/core/test_model.py) and are not used at run time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.model.layers import ExpertLayerNorm, ExpertLinear, masked_mean
from core.model.qformer import MixtureOfQFormers, QFormerBlock


def plain_qformer_block(blk: QFormerBlock, h: Tensor, seq: Tensor, mask: Tensor) -> Tensor:
    """One pre-norm Q-Former block per expert: self-attention among the queries, cross-attention to the
    sequence (padded keys masked out), then the FFN, each with a residual connection.

    h (E, b or 1, q, d) query tokens; seq (b, t, d) the normed sequence; mask (b, t) True on valid keys
    (every row needs one). Returns (E, b, q, d). No dropout: the reference is for inference.
    """
    experts, _, q, d = h.shape
    b = seq.shape[0]

    def heads(x: Tensor) -> Tensor:  # (b, n, d) -> (b, H, n, dh)
        return x.view(x.shape[0], -1, blk.h, blk.dh).transpose(1, 2)

    def merge(x: Tensor) -> Tensor:  # (b, H, q, dh) -> (b, q, d)
        return x.transpose(1, 2).reshape(b, q, d)

    out = []
    for e in range(experts):

        def ln(x: Tensor, norm: ExpertLayerNorm, e: int = e) -> Tensor:
            return F.layer_norm(x, (d,), norm.weight[e], norm.bias[e])

        def lin(x: Tensor, layer: ExpertLinear, e: int = e) -> Tensor:
            return x @ layer.weight[e] + layer.bias[e]

        x = h[e].expand(b, q, d)
        qs, ks, vs = lin(ln(x, blk.norm_sa), blk.qkv).split(d, dim=-1)
        x = x + lin(merge(F.scaled_dot_product_attention(heads(qs), heads(ks), heads(vs))), blk.out_sa)
        keys, values = blk.kv_ca(seq).split(d, dim=-1)
        queries = heads(lin(ln(x, blk.norm_ca), blk.q_ca))
        att = F.scaled_dot_product_attention(
            queries, heads(keys), heads(values), attn_mask=mask[:, None, None, :]
        )
        x = x + lin(merge(att), blk.out_ca)
        out.append(x + lin(F.gelu(lin(ln(x, blk.norm_ff), blk.ff1)), blk.ff2))
    return torch.stack(out)


def plain_mixture_of_qformers(moq: MixtureOfQFormers, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``x_hat = Σ_e g_e · LN(QF_e(x))`` for one modality: x (b, t, d) projected sequence, mask (b, t).

    Each expert's learned queries pass every block against the normed sequence; the router's softmax
    over the masked mean of the sequence gives the gates. Returns x_hat (b, q, d) and gates (b, E).
    """
    seq = moq.seq_norm(x)
    h = moq.queries.unsqueeze(1)  # (E, 1, q, d): the same queries for every sample
    for blk in moq.blocks:
        assert isinstance(blk, QFormerBlock)
        h = plain_qformer_block(blk, h, seq, mask)
    if moq.router is None:
        gates = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    else:
        gates = torch.softmax(moq.router(masked_mean(x, mask)), dim=-1)
    x_hat = sum(gates[:, e, None, None] * moq.out_norm(h[e]) for e in range(h.shape[0]))
    assert isinstance(x_hat, Tensor)
    return x_hat, gates
