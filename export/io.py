"""The exported graph's interface: input/output names, dtypes, dynamic axes, and batch <-> feeds.

Every backend (torch, onnxruntime, TensorRT) takes the same named inputs and returns the same named
outputs, so a runner can be swapped without touching the caller::

    text_ids   int64 (batch, t_text)            text encoder inside the graph, or
    text       float32 (batch, t_text, d_text)  pre-computed token embeddings (encoder outside)
    text_mask  bool (batch, t_text)             True on valid steps; likewise audio/vision
    audio      float32 (batch, t_audio, d_audio)
    vision     float32 (batch, t_vision, d_vision)
    presence   bool (batch, 3)                  MODALITIES order (text, audio, vision)
    ->
    score      float32 (batch,)
    unimodal   float32 (batch, 3)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from core.batch import ModalityBatch
from core.config import MODALITIES, FineConfig, TextEncoderConfig

TextInput = Literal["ids", "embeddings"]

OUTPUT_NAMES: tuple[str, str] = ("score", "unimodal")
PREDICTION_FIELDS: tuple[str, str, str] = ("score", "unimodal", "contributions")
BATCH_AXIS = "batch"


def text_feature_name(text_input: TextInput) -> str:
    return "text_ids" if text_input == "ids" else "text"


def text_input_of(model: nn.Module, text_encoder: str) -> TextInput:
    """What the graph of ``model`` takes as text: token ids when its encoder is ``"inside"``, else embeddings."""
    return "ids" if model.text_encoder is not None and text_encoder == "inside" else "embeddings"


def fusion_only(model: nn.Module) -> nn.Module:
    """The same FINE without its text encoder: text input becomes the encoder's token embeddings.

    Shares no state with ``model`` (weights are copied), so exporting it cannot disturb the original.
    """
    from core.model import FINE

    config: FineConfig = model.config  # type: ignore[assignment]
    if model.text_encoder is None:
        return model
    cfg = dataclasses.replace(config, text_encoder=TextEncoderConfig())
    clone = FINE(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    clone.load_state_dict(state, strict=True)
    return clone.eval()


def input_names(text_input: TextInput) -> list[str]:
    names = []
    for m in MODALITIES:
        names += [text_feature_name(text_input) if m == "text" else m, f"{m}_mask"]
    return [*names, "presence"]


def dynamic_axes(text_input: TextInput) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for m in MODALITIES:
        feat = text_feature_name(text_input) if m == "text" else m
        axes[feat] = {0: BATCH_AXIS, 1: f"t_{m}"}
        axes[f"{m}_mask"] = {0: BATCH_AXIS, 1: f"t_{m}"}
    axes["presence"] = {0: BATCH_AXIS}
    axes["score"] = {0: BATCH_AXIS}
    axes["unimodal"] = {0: BATCH_AXIS}
    return axes


@dataclass
class Prediction:
    """What every runner returns. numpy arrays, batch first, modality axis in ``MODALITIES`` order.

    score:          ``(b,)`` multimodal sentiment.
    unimodal:       ``(b, 3)`` one score per modality head.
    contributions:  ``(b, 3)`` exact Shapley values (``None`` when not requested); they sum to
                    ``score − f(no modality)``.
    presence:       ``(b, 3)`` effective presence (present flag AND at least one valid step).
    baseline:       ``(b,)`` f(no modality), the reference the contributions are measured from.
    """

    score: np.ndarray
    unimodal: np.ndarray
    contributions: np.ndarray | None
    presence: np.ndarray
    baseline: np.ndarray | None = None

    def as_dict(self) -> dict[str, np.ndarray | None]:
        return {name: getattr(self, name) for name in PREDICTION_FIELDS}


def batch_to_feeds(batch: ModalityBatch, text_input: TextInput) -> dict[str, np.ndarray]:
    """Graph feeds from a :class:`ModalityBatch` (CPU numpy, contiguous, graph dtypes)."""
    feeds: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        x = batch.features[m].detach().cpu()
        if m == "text":
            if text_input == "ids":
                if x.dtype.is_floating_point:
                    raise ValueError("this graph takes text token ids (int64 (b, t)); got float features")
                feeds["text_ids"] = np.ascontiguousarray(x.to(torch.int64).numpy())
            else:
                if x.ndim != 3:
                    raise ValueError(
                        "this graph takes pre-computed text embeddings (b, t, d); got token ids — "
                        "run the text encoder first or export with the encoder inside"
                    )
                feeds["text"] = np.ascontiguousarray(x.float().numpy())
        else:
            feeds[m] = np.ascontiguousarray(x.float().numpy())
        feeds[f"{m}_mask"] = np.ascontiguousarray(batch.masks[m].detach().cpu().bool().numpy())
    feeds["presence"] = np.ascontiguousarray(batch.presence.detach().cpu().bool().numpy())
    return feeds


def feeds_to_tensors(
    feeds: dict[str, np.ndarray],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Feeds -> ``(features, masks, presence)`` torch tensors in the form ``FINE.predict`` takes."""
    features, masks = {}, {}
    for m in MODALITIES:
        key = m if m in feeds else f"{m}_ids"
        features[m] = torch.from_numpy(feeds[key])
        masks[m] = torch.from_numpy(feeds[f"{m}_mask"])
    return features, masks, torch.from_numpy(feeds["presence"])


def effective_presence(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """``(b, 3)`` presence AND "has at least one valid step", as the model itself computes it."""
    valid = np.stack([feeds[f"{m}_mask"].any(axis=1) for m in MODALITIES], axis=1)
    return feeds["presence"].astype(bool) & valid


def example_feeds(
    config: FineConfig,
    text_input: TextInput,
    batch: int = 2,
    lengths: dict[str, int] | None = None,
    vocab_size: int = 100,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random feeds with the graph's dtypes (tracing, engine profiles, benchmarks, tests).

    Masks mark a random-length valid prefix (at least one step) and presence is all True.
    """
    rng = np.random.default_rng(seed)
    lengths = lengths or {m: 8 for m in MODALITIES}
    feeds: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        t = int(lengths[m])
        if m == "text" and text_input == "ids":
            feeds["text_ids"] = rng.integers(1, vocab_size, size=(batch, t), dtype=np.int64)
        else:
            feeds[m] = rng.standard_normal((batch, t, config.input_dims[m]), dtype=np.float32)
        valid = rng.integers(1, t + 1, size=batch)
        feeds[f"{m}_mask"] = np.arange(t)[None, :] < valid[:, None]
    feeds["presence"] = np.ones((batch, len(MODALITIES)), dtype=bool)
    return feeds
