"""Text in the form a model takes: tokenized for an encoder in the graph, or the frozen encoder's token
embeddings computed once (``fine train`` caches them; ``fine evaluate`` encodes raw transcripts)."""

from __future__ import annotations

from dataclasses import replace

import torch

from core.config import TextEncoderConfig
from core.errors import FineError
from training.data import Dataset, batch_order, collate


def check_text(splits: dict[str, Dataset]) -> None:
    missing = [
        s.id
        for ds in splits.values()
        for s in ds.samples
        if s.text is None and s.features.get("text") is not None
    ]
    if missing:
        raise FineError(
            f"--text-encoder needs the samples' text, but {missing[0]} (and {len(missing) - 1} more) has none"
        )


def quiet_transformers() -> None:
    """No 'Loading weights' bars on stderr: CLI errors must stay one line."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass


def tokenize_splits(splits: dict[str, Dataset], enc_cfg: TextEncoderConfig, hidden: int) -> None:
    from core.text_encoder import load_tokenizer
    from training.textdata import tokenize

    check_text(splits)
    tokenize(splits, load_tokenizer(enc_cfg), enc_cfg.max_length, hidden)


@torch.no_grad()
def cache_text_embeddings(splits: dict[str, Dataset], encoder: torch.nn.Module, batch_size: int = 64) -> None:
    """Replace token ids by the frozen encoder's token embeddings ``(t, hidden)`` (in place)."""
    encoder.eval()
    for ds in splits.values():
        for idx in batch_order(ds, batch_size, False, bucket=True):
            chunk = [ds.samples[i] for i in idx if ds.samples[i].features.get("text") is not None]
            if not chunk:
                continue
            b = collate(chunk, ds.feature_dims)
            h = encoder(b.features["text"], b.masks["text"]).float().numpy()
            for i, s in enumerate(chunk):
                s.features["text"] = h[i, : int(b.masks["text"][i].sum())].copy()


def embedded_copy(data: Dataset, encoder: torch.nn.Module) -> Dataset:
    """A copy of ``data`` (token ids) whose text is the frozen encoder's token embeddings."""
    samples = [replace(s, features=dict(s.features)) for s in data.samples]
    copy = Dataset(data.name, samples, data.feature_dims, data.label_range, data.feature_profile)
    cache_text_embeddings({"copy": copy}, encoder)
    return copy
