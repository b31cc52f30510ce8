"""Fusion Transformer with one [CLS] token per modality, and the prediction heads (docs/METHOD.md §1.4)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import FusionConfig
from core.model.layers import MLP


class FusionTransformer(nn.Module):
    """Prepends each modality's [CLS] to its q tokens, adds a modality embedding, runs a Transformer
    encoder over all ``M·(1+q)`` tokens and returns the M [CLS] outputs ``(b, M, d)``."""

    def __init__(self, d: int, num_modalities: int, cfg: FusionConfig) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(num_modalities, d) * 0.02)
        self.modality_emb = nn.Parameter(torch.randn(num_modalities, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=cfg.num_heads,
            dim_feedforward=cfg.ffn_mult * d,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: ``(M, b, q, d)``, the modalities' tokens stacked -> CLS outputs ``(b, M, d)``."""
        _, b, q, _ = tokens.shape
        cls = self.cls[:, None, None, :].expand(-1, b, 1, -1)
        h = torch.cat([cls, tokens], dim=2) + self.modality_emb[:, None, None, :]  # (M, b, 1+q, d)
        h = h.transpose(0, 1).flatten(1, 2)  # (b, M·(1+q), d): [CLS_1, tokens_1, CLS_2, ...]
        *inner, last = self.encoder.layers
        for layer in inner:
            h = encoder_layer(cast(nn.TransformerEncoderLayer, layer), h)
        return self.norm(encoder_layer(cast(nn.TransformerEncoderLayer, last), h, q + 1))


def encoder_layer(layer: nn.TransformerEncoderLayer, h: Tensor, stride: int | None = None) -> Tensor:
    """``layer(h)`` for a pre-norm, batch-first ``nn.TransformerEncoderLayer``, written out with the
    layer's own parameters and dropout sites; with ``stride``, only the rows ``0, stride, 2·stride, ...``
    (the [CLS] tokens) are computed, the other rows serving as keys and values only.

    Only the CLS outputs leave the fusion, so in the last layer the other tokens' queries, output
    projection and FFN rows would be thrown away: about a third of the fusion's work at the defaults.
    The attention is spelled out in CPU-friendly layouts, exact up to float rounding (tested against
    ``nn.TransformerEncoder``): keys and values are projected straight into head-major ``(b, H, n, dh)``
    (no transposes), the key bias is dropped (it shifts each query's scores by a constant, which softmax
    ignores), the value bias moves into the output projection's bias (softmax rows sum to 1) and the
    1/√dh scale into the query projection.
    """
    attn = layer.self_attn
    b, _, d = h.shape
    hh = attn.num_heads
    dh = d // hh
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    hn = layer.norm1(h)
    rows, res = (hn, h) if stride is None else (hn[:, ::stride], h[:, ::stride])
    nq = rows.shape[1]
    q = F.linear(rows, weight[:d] * dh**-0.5, bias[:d] * dh**-0.5).view(b, nq, hh, dh).transpose(1, 2)
    kv_weight = weight[d:].view(2, hh, dh, d).transpose(2, 3)  # (2, H, d, dh)
    k = torch.matmul(hn.unsqueeze(1), kv_weight[0])  # (b, H, n, dh)
    v = torch.matmul(hn.unsqueeze(1), kv_weight[1])
    p = F.dropout(torch.matmul(q, k.transpose(-1, -2)).softmax(-1), attn.dropout, layer.training)
    att = torch.matmul(p, v).transpose(1, 2).reshape(b, nq, d)
    out = attn.out_proj
    x = res + layer.dropout1(F.linear(att, out.weight, out.bias + out.weight @ bias[2 * d :]))
    ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
    return x + layer.dropout2(ff)


class Heads(nn.Module):
    """Multimodal head on the concatenated CLS outputs; one unimodal head per modality CLS (Pred_U)."""

    def __init__(self, d: int, num_modalities: int, hidden: int, unimodal: bool, dropout: float) -> None:
        super().__init__()
        self.multimodal = MLP(num_modalities * d, hidden, 1, dropout=dropout)
        self.unimodal = (
            nn.ModuleList(MLP(d, hidden, 1, dropout=dropout) for _ in range(num_modalities))
            if unimodal
            else None
        )

    def forward(self, cls: Tensor) -> tuple[Tensor, Tensor | None]:
        b = cls.shape[0]
        score = self.multimodal(cls.reshape(b, -1)).squeeze(-1)  # (b,)
        if self.unimodal is None:
            return score, None
        uni = torch.cat([head(cls[:, i]) for i, head in enumerate(self.unimodal)], dim=-1)  # (b, M)
        return score, uni
