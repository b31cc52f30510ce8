"""Self-describing model artifacts: a directory with ``model.safetensors`` and ``config.json``.

No pickle anywhere: weights are safetensors, everything else is JSON. ``config.json`` holds the model
config (which rebuilds the graph), the feature profile, the label scale, a free-form training/data
description and metrics (the model card). Training-only state that must survive (the contrastive queue,
critics) is saved beside it in ``loss.safetensors`` by whoever owns it (the trainer).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core import __version__
from core.config import ConfigError, FineConfig
from core.errors import InputError
from core.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from core.model import FINE

log = logging.getLogger(__name__)

FORMAT = "fine-artifact"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ArtifactError(InputError):
    """A model artifact is missing, malformed or unsafe. The message names the file and the fix."""


@dataclass
class ModelCard:
    """What a user needs to know about a trained model (lives in config.json next to the model config)."""

    name: str = "fine"
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(config: FineConfig) -> FINE:
    """Construct FINE for ``config``, loading the pretrained text encoder if the config names one."""
    from core.model import FINE
    from core.text_encoder import load_text_encoder

    encoder = load_text_encoder(config.text_encoder) if config.text_encoder.source else None
    return FINE(config, text_encoder=encoder)


def _weights_to_save(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    encoder = getattr(model, "text_encoder", None)
    if encoder is not None and not encoder.finetune:
        # A frozen encoder is reloaded from its source: do not copy hundreds of MB into every artifact.
        state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused with one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read weights ({exc.strerror})") from None
    # safetensors: an 8-byte little-endian header size, then the JSON header ("{"). A pickle starts with
    # \x80 + protocol byte, torch.save's zip with "PK". (A header size like 0x...80 also starts with \x80,
    # so the first byte alone cannot tell them apart.)
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if (not looks_safetensors and head[:1] in (b"\x80", b"P")) or path.suffix in (
        ".pt",
        ".pth",
        ".pkl",
        ".bin",
    ):
        raise ArtifactError(
            f"{path}: looks like a pickle/torch.save file; FINE loads safetensors only "
            "(pickles can execute code). Convert the weights with safetensors.torch.save_file"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc}); re-export the model") from None


def save_model(
    model: nn.Module,
    directory: str | os.PathLike[str],
    card: ModelCard | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``config.json`` atomically into ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config: FineConfig = model.config  # type: ignore[assignment]
    card = card or ModelCard()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fine_version": __version__,
        "model": config.to_dict(),
        "card": {
            "name": card.name,
            "description": card.description,
            "training_data": card.training_data,
            "metrics": card.metrics,
            **card.extra,
        },
    }
    save_tensors(out / WEIGHTS, _weights_to_save(model), {"format": FORMAT})
    atomic_write_bytes(out / CONFIG, (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode())
    log.info("saved model to %s", out)
    return out


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory)
    cfg_path = path / CONFIG if path.is_dir() else path
    if not cfg_path.exists():
        raise ArtifactError(f"{path}: no {CONFIG} found; pass a model directory made by 'fine train'")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_path}: not valid JSON ({exc}); the artifact is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model" not in meta:
        raise ArtifactError(f"{cfg_path}: not a FINE model config (missing format/model keys)")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path}: artifact format {meta['format_version']} is newer than this fine ({FORMAT_VERSION}); "
            "upgrade fine-msa"
        )
    return meta


def load_model(directory: str | os.PathLike[str], map_location: str = "cpu") -> FINE:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` (strictly). Eval mode."""
    path = Path(directory)
    meta = read_config(path)
    try:
        config = FineConfig.from_dict(meta["model"])
    except ConfigError as exc:
        raise ArtifactError(f"{path / CONFIG}: invalid model config: {exc}") from None
    model = build_model(config)
    weights_path = path / WEIGHTS
    if not weights_path.exists():
        raise ArtifactError(f"{path}: no {WEIGHTS}; the artifact is incomplete")
    state = load_tensors(weights_path)
    encoder = getattr(model, "text_encoder", None)
    expected = _weights_to_save(model).keys() if encoder is not None else model.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise ArtifactError(
            f"{weights_path}: weights do not match config.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); the two files come from different models"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, different shapes
        first = str(exc).strip().splitlines()[-1].strip()
        raise ArtifactError(f"{weights_path}: weights do not fit config.json ({first})") from None
    return model.to(map_location).eval()
