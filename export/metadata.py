"""What an exported graph says about itself: the ``fine.*`` entries of its ONNX ``metadata_props``.

This is the runtime side (what the app and a Jetson load). It reads the metadata through onnxruntime's
session metadata, so reading needs no ``onnx`` package; :mod:`export.onnx_export` writes it with
:func:`metadata_for`. Keys (prefix ``fine.``): ``config``, ``feature_profile`` and ``label_range``
(JSON), ``text_input`` (ids | embeddings), ``text_encoder_source``, ``modalities``, ``outputs``,
``opset``, ``fine_version``, ``torch_version`` and, when the model has one, ``card`` (JSON); a text
encoder exported on its own has ``role`` = ``text_encoder`` and ``text_encoder_source``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import __version__
from core.config import MODALITIES, FineConfig
from core.errors import MissingDependencyError
from export.io import OUTPUT_NAMES, TextInput

META_PREFIX = "fine."


def metadata_for(
    model: nn.Module, text_input: TextInput, opset: int, card: dict[str, Any] | None
) -> dict[str, str]:
    """The ``fine.*`` metadata of ``model`` (a FINE) exported with ``text_input`` at ``opset``."""
    config: FineConfig = model.config  # type: ignore[assignment]
    meta = {
        "config": json.dumps(config.to_dict()),
        "feature_profile": json.dumps(config.feature_profile),
        "text_input": text_input,
        "text_encoder_source": str(config.text_encoder.source),
        "modalities": ",".join(MODALITIES),
        "outputs": ",".join(OUTPUT_NAMES),
        "label_range": json.dumps(list(config.label_range)),
        "opset": str(opset),
        "fine_version": __version__,
        "torch_version": torch.__version__,
    }
    if card is not None:
        meta["card"] = json.dumps(card)
    return {META_PREFIX + k: v for k, v in meta.items()}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``fine.*`` metadata of an exported graph, prefix stripped.

    Read with onnxruntime (a session without graph optimisation); where only ``onnx`` is installed
    (a machine that builds TensorRT engines), with ``onnx``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        props = _props_with_onnx(path)
    else:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
    return fine_entries(props)


def fine_entries(props: Mapping[str, str]) -> dict[str, str]:
    """The ``fine.*`` entries of a graph's metadata, prefix stripped."""
    return {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}


def _props_with_onnx(path: str | Path) -> dict[str, str]:
    return {p.key: p.value for p in load_onnx(path).metadata_props}


def load_onnx(path: str | Path) -> Any:
    """The graph's ``ModelProto`` (weights stored outside it are not loaded), with the ``onnx`` package."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            f"{path}: reading the graph needs the 'onnx' package: pip install 'fine-msa[export]'"
        ) from None
    return onnx.load(str(path), load_external_data=False)


def file_digest(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of the file's SHA-256 (model ids, engine cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
