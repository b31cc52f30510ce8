"""Fusion Transformer with one [CLS] token per modality, and the prediction heads (METHOD.md §1.4)."""

from __future__ import annotations

import torch
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

    def forward(self, tokens: list[Tensor]) -> Tensor:
        """tokens: M tensors ``(b, q, d)`` -> CLS outputs ``(b, M, d)``."""
        b, q, _ = tokens[0].shape
        seq = []
        for i, tok in enumerate(tokens):
            cls = self.cls[i].expand(b, 1, -1)
            seq.append(torch.cat([cls, tok], dim=1) + self.modality_emb[i])
        h = torch.cat(seq, dim=1)  # (b, M·(1+q), d)
        *inner, last = self.encoder.layers
        for layer in inner:
            h = layer(h)
        return self.norm(self._cls_only(last, h, q + 1))

    @staticmethod
    def _cls_only(layer: nn.TransformerEncoderLayer, h: Tensor, stride: int) -> Tensor:
        """The last (pre-norm) encoder layer, computed for the [CLS] rows only: ``(b, M, d)``.

        Only the CLS outputs leave the fusion, so in the last layer the other tokens are needed only as
        keys and values; their queries, output projection and FFN rows would be thrown away. Exactly
        ``layer(h)[:, ::stride]`` (same parameters, same dropout sites), for about a third of the
        fusion's work at the defaults.
        """
        hn = layer.norm1(h)
        cls = h[:, ::stride]  # CLS positions 0, 1+q, 2(1+q), ...
        att = layer.self_attn(hn[:, ::stride], hn, hn, need_weights=False)[0]
        cls = cls + layer.dropout1(att)
        ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(cls)))))
        return cls + layer.dropout2(ff)


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
