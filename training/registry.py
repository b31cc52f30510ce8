"""The models ``fine train`` / ``fine evaluate`` know, by name: how each builds its config, model and loss,
saves its artifact and loads one back (``KINDS``: ``fine`` and the ``mmim`` baseline).

A caller looks a kind up (``KINDS[name]``, or :func:`kind_of_artifact` for a saved model) and never
branches on the name; a new baseline is one more :class:`ModelKind` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from core.artifact import ModelCard, load_model, read_config, save_model
from core.config import FineConfig, LossConfig, from_dict
from training.data import Dataset

PRESETS: dict[str, dict[str, Any]] = {
    # docs/METHOD.md defaults: E=4, q=8, d=128, 2 Q-Former blocks, 2 fusion layers, 4 heads.
    "default": {},
    # A small model for demos, tests and 2-core laptops (ffn_mult 4: the shipped default model's recipe).
    "small": {
        "d_model": 64,
        "moq": {"num_experts": 2, "num_queries": 4, "num_blocks": 1, "num_heads": 4, "ffn_mult": 4},
        "ftre": {"feat_dim": 32, "hidden": 64},
        "fusion": {"num_layers": 1, "num_heads": 4, "head_hidden": 64},
    },
}


def build_config(
    feature_dims: dict[str, int],
    label_range: tuple[float, float],
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
) -> FineConfig:
    """A FINE config: the ``preset`` with ``overrides`` (nested dicts merged one level deep)."""
    data: dict[str, Any] = json.loads(json.dumps(PRESETS[preset]))
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    data.setdefault("input_dims", dict(feature_dims))
    data.setdefault("label_range", list(label_range))
    return FineConfig.from_dict(data)


@dataclass(frozen=True)
class ModelKind:
    """One trainable model family. ``config(train, preset, overrides)`` resolves the model config from
    the training data; ``model(cfg, text_encoder)`` and ``loss(cfg, overrides)`` build; ``save(model,
    directory, card, recipe, loss)`` writes the artifact (``card``: name, description, training_data,
    metrics; ``recipe``: the training and robust configs); ``load(directory)`` reads it back.
    ``reseed_encoder_model``: the seed is set again right before the model that holds a trainable text
    encoder is built (FINE's recipe; MMIM's is not)."""

    name: str
    config: Callable[[Dataset, str, dict[str, Any]], Any]
    model: Callable[[Any, nn.Module | None], nn.Module]
    loss: Callable[[Any, dict[str, Any]], nn.Module]
    save: Callable[[nn.Module, Path, dict[str, Any], dict[str, Any], nn.Module], None]
    load: Callable[[Path], nn.Module]
    reseed_encoder_model: bool


# --- FINE


def _fine_config(train: Dataset, preset: str, overrides: dict[str, Any]) -> FineConfig:
    if train.feature_profile is not None and "feature_profile" not in overrides:
        # data built by our extractors: record them, so scoring refuses features it cannot reproduce
        overrides = {**overrides, "feature_profile": train.feature_profile}
    return build_config(train.feature_dims, train.label_range, preset, overrides)


def _fine_model(cfg: Any, text_encoder: nn.Module | None) -> nn.Module:
    from core.model import FINE

    return FINE(cfg, text_encoder=text_encoder)


def _fine_loss(cfg: Any, overrides: dict[str, Any]) -> nn.Module:
    from core.losses import FineLoss

    return FineLoss(cfg, from_dict(LossConfig, overrides))


def _fine_save(
    model: nn.Module, directory: Path, card: dict[str, Any], recipe: dict[str, Any], loss: nn.Module
) -> None:
    model_card = ModelCard(card["name"], card["description"], card["training_data"], card["metrics"], recipe)
    save_model(model, directory, model_card)
    loss.save(directory / "loss.safetensors")  # type: ignore[operator]


# --- MMIM


def _mmim_config(train: Dataset, preset: str, overrides: dict[str, Any]) -> Any:
    from core.mmim import MMIMConfig

    data = {"input_dims": dict(train.feature_dims), "label_range": list(train.label_range), **overrides}
    data["text_encoder"] = data.get("text_encoder", {})
    return MMIMConfig.from_dict(json.loads(json.dumps(data)))


def _mmim_model(cfg: Any, text_encoder: nn.Module | None) -> nn.Module:
    from core.mmim import MMIM

    return MMIM(cfg, text_encoder)  # type: ignore[arg-type]


def _mmim_loss(cfg: Any, overrides: dict[str, Any]) -> nn.Module:
    from core.mmim import MMIMLoss, MMIMLossConfig

    return MMIMLoss(cfg, from_dict(MMIMLossConfig, overrides))


def _mmim_save(
    model: nn.Module, directory: Path, card: dict[str, Any], recipe: dict[str, Any], loss: nn.Module
) -> None:
    from core.mmim import save_mmim

    save_mmim(model, directory, card)  # type: ignore[arg-type]


def _mmim_load(directory: Path) -> nn.Module:
    from core.mmim import load_mmim

    return load_mmim(directory)


KINDS: dict[str, ModelKind] = {
    "fine": ModelKind("fine", _fine_config, _fine_model, _fine_loss, _fine_save, load_model, True),
    "mmim": ModelKind("mmim", _mmim_config, _mmim_model, _mmim_loss, _mmim_save, _mmim_load, False),
}


def kind_of_artifact(path: Path) -> ModelKind:
    """The kind that wrote the artifact at ``path`` (its ``architecture``; FINE unless another kind's)."""
    architecture = read_config(path).get("architecture")
    return KINDS.get(architecture, KINDS["fine"]) if isinstance(architecture, str) else KINDS["fine"]


def load_any_model(path: Path) -> nn.Module:
    """A trained model of any kind in :data:`KINDS`."""
    return kind_of_artifact(path).load(path)
