"""A model's identity and feature profile, read before it runs: the stage every scorer starts with.

Works on an artifact directory or an ``.onnx`` file (through onnxruntime's session metadata: the
``onnx`` package is not needed); an ``.engine`` alone does not say its profile.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError
from core.features.profile import FeatureProfile, FeatureProfileError, check_profile
from export.runtime import find_model_files


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model before running it."""

    path: Path
    model_id: str  # card name + digest of the weights: identifies the model in every timeline row
    profile: FeatureProfile
    label_range: tuple[float, float]
    input_dims: dict[str, int]  # the graph's feature widths (also for modalities the profile lacks)

    @property
    def folder(self) -> Path:
        """Where the model's own files are (its text adapter): the directory, or an ``.onnx``'s folder."""
        return self.path if self.path.is_dir() else self.path.parent


def model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read the feature profile and identity of an artifact directory or an ``.onnx`` file."""
    from core.artifact import read_config
    from export.metadata import file_digest, read_metadata

    files = find_model_files(path)  # InputError when the path does not exist
    if files.artifact is not None:
        meta = read_config(files.artifact)
        config = meta["model"]
        profile, card = config.get("feature_profile"), meta.get("card") or {}
        weights = files.artifact / "model.safetensors"
        digest_of = weights if weights.is_file() else (files.onnx or files.engine)
    elif files.onnx is not None:
        meta = read_metadata(files.onnx)  # onnxruntime's session metadata: no onnx package needed
        config = json.loads(meta.get("config", "{}"))
        profile = config.get("feature_profile")
        card = json.loads(meta.get("card", "{}"))
        digest_of = files.onnx
    elif files.engine is None:
        raise InputError(
            f"{path}: not a model (no config.json, .onnx or .engine in it); pass a directory written by "
            "'fine train' or 'fine export', or leave --model out for the shipped default model"
        )
    else:
        raise InputError(
            f"{path}: an .engine alone does not say its feature profile; pass its model directory"
        )
    if profile is None:
        check_profile(None, FeatureProfile())  # raises the explanatory FeatureProfileError
    digest = file_digest(digest_of, 12) if digest_of is not None else "unknown"
    name = str(card.get("name") or "fine")
    try:
        prof = FeatureProfile.from_dict(profile)
    except ValueError as exc:
        raise FeatureProfileError(f"{path}: the model's feature profile is invalid: {exc}") from None
    lo, hi = (float(x) for x in config.get("label_range", (-3.0, 3.0)))
    dims = {m: int(d) for m, d in (config.get("input_dims") or prof.dims()).items()}
    return ModelInfo(Path(path), f"{name}-{digest}", prof, (lo, hi), dims)
