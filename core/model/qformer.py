"""Mixture of Q-Formers (MoQ), one per modality (docs/METHOD.md §1.2).

Each expert is a small Q-Former: L learnable query tokens that self-attend, cross-attend to the projected
modality sequence (key padding applied) and pass an FFN, for ``num_blocks`` blocks. A router (softmax over
experts, fed by the masked mean of the sequence) mixes the experts densely: no data-dependent control
flow, so the graph exports cleanly.

Each modality owns its MoQ (its parameters), but the MoQs of all modalities run as one computation
(:func:`mixture_of_qformers`): the per-expert weights of every modality are stacked on one leading
"group" axis (modality × expert), so every per-expert map of the query tokens is one batched GEMM for all
modalities at once; only the cross-attention core (scores, softmax, values) runs per modality, against
that modality's own keys. The cross-attention keys/values of a sequence are projected once per block,
straight into head-major layout, and shared by its experts, which keeps long sequences cheap.

This is the fast form. :mod:`core.model.reference` writes the same block and mixture plainly, one expert
at a time; read that first to see what is computed, and this module for how it is made cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import MoQConfig
from core.model.layers import ExpertLayerNorm, ExpertLinear, fold_norm, masked_mean

# one modality's cross-attention inputs: keys, values (H, b, t, dh) and the additive key mask (1, b, E·q, t)
CrossInputs = tuple[Tensor, Tensor, Tensor]


class QFormerBlock(nn.Module):
    """Self-attention over queries, cross-attention to the sequence, FFN; pre-norm, E experts at once.

    Query tokens use the expert-first layout ``(G, b, q, d)`` (G groups: the experts of one or several
    modalities) so that every per-expert linear map is one batched GEMM; for cross-attention the queries
    of a modality's experts are folded into one query axis ``(H, b, E·q, dh)`` against that modality's
    keys, so no key/value tensor is ever copied per expert.

    The query axis may have batch size 1 while the sequence has b: the first block receives the learned
    queries themselves, identical for every sample, so its self-attention and cross-attention query
    projection run once instead of b times (exact; about a fifth of the MoQ's GEMM work at the defaults,
    and the part an ONNX optimiser folds to a constant). The result broadcasts to b at the first residual
    that involves the sequence.

    Attention is written out (no fused kernel) in layouts chosen for CPU inference; each rewrite is exact
    up to float rounding (tests/core/test_model.py checks the block against
    :func:`core.model.reference.plain_qformer_block`, the same block written plainly, one expert at a time):

    - keys and values are projected straight into head-major ``(H, b, t, dh)`` (a weight reshape, free
      once exported), so the sequence, the largest tensor of the block, is never transposed;
    - the value bias moves past the attention into ``out_ca``'s bias (softmax rows sum to 1), and the
      key bias, which shifts each query's scores by a constant that softmax ignores, is added only in
      training (where it keeps its exact-zero gradient and the checkpoint layout stays the same);
    - every LayerNorm's affine and the 1/√dh scale are folded into the map that follows
      (:func:`~core.model.layers.fold_norm`), and the key padding mask arrives as an additive bias
      computed once per sequence for all blocks (no fully masked row exists: the caller gives absent
      samples a dummy valid key).
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
        without the value bias (see :meth:`expert_weights`) and, outside training, without the key bias."""
        b, d, hh, dh = seq.shape[0], self.d, self.h, self.dh
        weight = self.kv_ca.weight.view(2 * hh, dh, d).transpose(1, 2)  # (2H, d, dh): rows are (k|v, head)
        flat = seq.reshape(1, -1, d)
        k = torch.matmul(flat, weight[:hh]).view(hh, b, -1, dh)
        v = torch.matmul(flat, weight[hh:]).view(hh, b, -1, dh)
        if self.training:
            k = k + self.kv_ca.bias[:d].view(hh, 1, 1, dh)
        return k, v

    def expert_weights(self) -> dict[str, Tensor]:
        """The block's maps as used by :func:`qformer_block`, each with the expert axis first (so the
        blocks of several modalities stack on it): norms' affines, the attention scale and the value
        biases folded in, self-attention keys/values as per-head ``(E, H, d, dh)`` weights."""
        e, d, hh, dh = self.e, self.d, self.h, self.dh
        s = dh**-0.5
        qkv_w, qkv_b = fold_norm(self.norm_sa, self.qkv)  # (E, d, 3d), (E, 1, 3d)
        sa_kv = qkv_w[..., d:].view(e, d, 2 * hh, dh).transpose(1, 2)  # (E, 2H, d, dh)
        ca_q_w, ca_q_b = fold_norm(self.norm_ca, self.q_ca, scale=s)
        ff1_w, ff1_b = fold_norm(self.norm_ff, self.ff1)
        v_bias = self.kv_ca.bias[d:]  # Σ_t p_t (v_t + c) = Σ_t p_t v_t + c: into out_ca's bias
        return {
            "sa_q_w": qkv_w[..., :d] * s,
            "sa_q_b": qkv_b[..., :d] * s,
            "sa_k_w": sa_kv[:, :hh],
            "sa_v_w": sa_kv[:, hh:],
            "sa_k_b": qkv_b[..., d : 2 * d],  # training only (see the class docstring)
            "out_sa_w": self.out_sa.weight,
            "out_sa_b": self.out_sa.bias.unsqueeze(1) + torch.bmm(qkv_b[..., 2 * d :], self.out_sa.weight),
            "ca_q_w": ca_q_w,
            "ca_q_b": ca_q_b,
            "out_ca_w": self.out_ca.weight,
            "out_ca_b": (self.out_ca.bias + torch.matmul(v_bias, self.out_ca.weight)).unsqueeze(1),
            "ff1_w": ff1_w,
            "ff1_b": ff1_b,
            "ff2_w": self.ff2.weight,
            "ff2_b": self.ff2.bias.unsqueeze(1),
        }

    def forward(self, h: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor) -> Tensor:
        """One modality: h (E, b or 1, q, d) queries; k, v (H, b, t, dh) from :meth:`keys_values`;
        attn_bias (1, b, E·q or 1, t) additive key mask (0 valid, a large negative number padding).
        Returns (E, b, q, d)."""
        size = (self.e, h.shape[2], self.d, self.h)
        return qformer_block(self.expert_weights(), h, [(k, v, attn_bias)], size, self.drop.p, self.training)


def qformer_block(
    w: dict[str, Tensor],
    h: Tensor,
    cross: Sequence[CrossInputs],
    size: tuple[int, int, int, int],
    dropout: float,
    training: bool,
) -> Tensor:
    """One Q-Former block for the experts of M modalities at once.

    w: :meth:`QFormerBlock.expert_weights` of the M blocks, concatenated on the expert axis (G = M·E
    groups, modality-major); h (G, b or 1, q, d); cross: per modality, its keys, values and key mask;
    size: (E, q, d, heads) as Python ints (an exported graph then reshapes by constants).
    Returns (G, b, q, d).
    """
    e, q, d, hh = size
    m = len(cross)
    g, dh = m * e, d // hh

    def drop(x: Tensor) -> Tensor:
        return F.dropout(x, dropout, training) if dropout > 0 else x

    def norm(x: Tensor) -> Tensor:  # affine-free LayerNorm (the affines are folded into w), (G, rows, d)
        return F.layer_norm(x, (d,)).reshape(g, -1, d)

    # self-attention among the q query tokens of each expert, in (G, H, hb, q, dh); keys and values
    # straight into head-major layout
    x = norm(h)
    qs = torch.baddbmm(w["sa_q_b"], x, w["sa_q_w"]).view(g, -1, q, hh, dh)
    ks = torch.matmul(x.unsqueeze(1), w["sa_k_w"]).view(g, hh, -1, q, dh)
    vs = torch.matmul(x.unsqueeze(1), w["sa_v_w"]).view(g, hh, -1, q, dh)
    if training:
        ks = ks + w["sa_k_b"].view(g, hh, 1, 1, dh)
    scores = torch.matmul(qs.permute(0, 3, 1, 2, 4), ks.transpose(-1, -2))  # (G, H, hb, q, q)
    att = torch.matmul(scores.softmax(-1), vs).permute(0, 2, 3, 1, 4).reshape(g, -1, d)
    h = h + drop(torch.baddbmm(w["out_sa_b"], att, w["out_sa_w"]).view(g, -1, q, d))
    # cross-attention: each modality's expert queries attend to that modality's keys (scale in the queries)
    qc = torch.baddbmm(w["ca_q_b"], norm(h), w["ca_q_w"]).view(m, e, -1, q, hh, dh)
    qc = qc.permute(0, 4, 2, 1, 3, 5)  # (M, H, b, E, q, dh): one transpose for all modalities
    parts = []
    for qm, (k, v, attn_bias) in zip(qc.unbind(0) if m > 1 else [qc[0]], cross, strict=True):
        # (H, b, E·q, t)
        scores = torch.matmul(qm.reshape(hh, -1, e * q, dh), k.transpose(-1, -2)) + attn_bias
        parts.append(torch.matmul(scores.softmax(-1), v).view(hh, -1, e, q, dh))
    att = torch.stack(parts) if m > 1 else parts[0].unsqueeze(0)
    att = att.permute(0, 3, 2, 4, 1, 5)  # (M, E, b, q, H, dh)
    att = torch.baddbmm(w["out_ca_b"], att.reshape(g, -1, d), w["out_ca_w"])
    h = h + drop(att.view(g, -1, q, d))  # broadcasts (G, 1, q, d) queries to (G, b, q, d)
    # feed-forward
    f = drop(F.gelu(torch.baddbmm(w["ff1_b"], norm(h), w["ff1_w"])))
    return h + drop(torch.baddbmm(w["ff2_b"], f, w["ff2_w"]).view(g, -1, q, d))


class MixtureOfQFormers(nn.Module):
    """``x_hat = Σ_e g_e · QF_e(x)``: (b, t, d) sequence -> (b, q, d) query tokens, plus gates (b, E).

    The parameters of one modality's MoQ; :func:`mixture_of_qformers` runs the MoQs of several
    modalities together, and ``forward`` is that for this modality alone."""

    def __init__(self, d: int, cfg: MoQConfig) -> None:
        super().__init__()
        self.experts, self.num_queries, self.d = cfg.experts, cfg.num_queries, d
        self.queries = nn.Parameter(torch.randn(self.experts, cfg.num_queries, d) * 0.02)
        self.seq_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            QFormerBlock(d, cfg.num_heads, self.experts, cfg.dropout, cfg.ffn_mult)
            for _ in range(cfg.num_blocks)
        )
        self.out_norm = nn.LayerNorm(d)
        self.router = nn.Linear(d, self.experts) if self.experts > 1 else None

    def gates(self, x: Tensor, mask: Tensor) -> Tensor:
        """Router weights (b, E) from the masked mean of the sequence."""
        if self.router is None:
            return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return torch.softmax(self.router(masked_mean(x, mask)), dim=-1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x_hat, gates = mixture_of_qformers([self], [x], [mask])
        return x_hat[0], gates[0]


def mixture_of_qformers(
    moqs: Sequence[MixtureOfQFormers],
    xs: Sequence[Tensor],
    masks: Sequence[Tensor],
    weights: Sequence[dict[str, Tensor]] | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Run the MoQs of M modalities (same config, as every FINE builds them) as one computation.

    xs[i] (b, t_i, d) and masks[i] (b, t_i): modality i's projected sequence and key mask (t may differ
    between modalities). ``weights``: :func:`stack_expert_weights` of ``moqs`` computed beforehand
    (inference only); computed here from the parameters when not given. Returns x_hat (M, b, q, d) and,
    per modality, the gates (b, E). :func:`core.model.reference.plain_mixture_of_qformers` states the
    same computation plainly, for one modality.
    """
    first = moqs[0]
    e, q, d = first.experts, first.num_queries, first.d
    m, b = len(moqs), xs[0].shape[0]
    blocks = [cast(list[QFormerBlock], list(moq.blocks)) for moq in moqs]
    same = [
        moq.queries.shape == first.queries.shape and len(bl) == len(blocks[0])
        for moq, bl in zip(moqs, blocks)
    ]
    if not all(same):
        raise ValueError("mixture_of_qformers: the modalities' MoQs must share one configuration")
    size = (e, q, d, blocks[0][0].h)
    training = first.training
    seqs = [moq.seq_norm(x) for moq, x in zip(moqs, xs, strict=True)]
    # additive key masks, built once for every block, already the size of the scores' last two axes
    # (a broadcast over whole (E·q, t) planes is several times cheaper on CPU than one over rows)
    biases = [
        torch.zeros_like(x[..., 0]).masked_fill(~mk, torch.finfo(x.dtype).min)[None, :, None, :]
        for x, mk in zip(xs, masks, strict=True)
    ]
    biases = [bias.expand(1, -1, e * q, -1) for bias in biases]
    # (G, 1, q, d): the same for every sample until the first cross-attention
    h = torch.cat([moq.queries for moq in moqs]).unsqueeze(1) if m > 1 else first.queries.unsqueeze(1)
    if training:  # per-sample dropout masks in the first block, as with any other token
        h = h.expand(-1, b, -1, -1)
    stacked = stack_expert_weights(moqs) if weights is None else weights
    for layer, w in zip(zip(*blocks, strict=True), stacked, strict=True):
        cross = [(*blk.keys_values(seq), bias) for blk, seq, bias in zip(layer, seqs, biases, strict=True)]
        h = qformer_block(w, h, cross, size, layer[0].drop.p, training)
    gates = [moq.gates(x, mk) for moq, x, mk in zip(moqs, xs, masks, strict=True)]
    # Σ_e g_e (LN(h_e) γ + β) = (Σ_e g_e LN(h_e)) γ + β (the gates sum to 1): mix, then each modality's affine
    g_all = torch.cat([gt.t() for gt in gates]) if m > 1 else gates[0].t()  # (G, b)
    mixed = (g_all[:, :, None, None] * F.layer_norm(h, (d,))).view(m, e, -1, q, d).sum(1)  # (M, b, q, d)
    gamma = torch.stack([moq.out_norm.weight for moq in moqs])[:, None, None, :]
    beta = torch.stack([moq.out_norm.bias for moq in moqs])[:, None, None, :]
    return mixed * gamma + beta, gates


def stack_expert_weights(moqs: Sequence[MixtureOfQFormers]) -> list[dict[str, Tensor]]:
    """Per block, the :meth:`QFormerBlock.expert_weights` of every modality concatenated on the expert axis.

    Computed from the parameters on every training step; for eager inference
    :meth:`core.model.fine.FINE.prepare_inference` computes it once (the folds and the concatenation copy
    about 20 MB at the defaults, which would otherwise dominate a batch-1 call). An exported graph folds
    these weights to constants anyway.
    """
    stacked = []
    for layer in zip(*(cast(list[QFormerBlock], list(moq.blocks)) for moq in moqs), strict=True):
        weights = [blk.expert_weights() for blk in layer]
        stacked.append(
            weights[0] if len(weights) == 1 else {k: torch.cat([w[k] for w in weights]) for k in weights[0]}
        )
    return stacked
