"""ONNX export of FINE's inference graph (no critics, decoder, queue or label encoders).

``export_onnx(model, out)`` writes ``out`` (one self-contained ``.onnx``) whose named inputs and outputs
are those of :mod:`export.io`, with dynamic batch and per-modality sequence axes, a pinned opset, and the
model config, feature profile and model card in ``metadata_props`` (:mod:`export.metadata`). The graph is checked with
``onnx.checker`` and, when ``onnxslim`` is installed, simplified (and kept only if it still matches).

Text encoder placement (``ExportOptions.text_encoder``):

- ``"inside"``: the BERT-family encoder is part of the graph, which takes ``text_ids``.
- ``"outside"``: the main graph takes ``text`` embeddings; the encoder is written beside it as
  ``<stem>.text_encoder.onnx`` (``text_ids, text_mask -> text_embeddings``) so a deployment can run it on
  its own schedule (once per utterance) or on another device.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from core.config import MODALITIES, FineConfig
from core.errors import InputError, MissingDependencyError, check
from export.io import (
    OUTPUT_NAMES,
    TextInput,
    dynamic_axes,
    example_feeds,
    feeds_to_tensors,
    fusion_only,
    input_names,
    text_input_of,
)
from export.metadata import META_PREFIX, metadata_for

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # LayerNormalization is native from 17; TensorRT 10.3's parser and ORT >= 1.14 take it


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs the 'onnx' package: pip install 'fine-msa[export]'"
        ) from None
    return onnx


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    text_encoder: Literal["inside", "outside"] = "inside"
    simplify: bool = True
    check: bool = True
    trace_batch: int = 2
    trace_length: int = 7

    def __post_init__(self) -> None:
        opset_msg = f"opset must be in 17..20 (LayerNormalization needs 17), got {self.opset}"
        check(17 <= self.opset <= 20, opset_msg, InputError)
        where = f"text_encoder must be 'inside' or 'outside', got {self.text_encoder!r}"
        check(self.text_encoder in ("inside", "outside"), where, InputError)
        trace = "trace_batch and trace_length must be >= 2 (a size-1 axis can be specialised)"
        check(self.trace_batch >= 2 and self.trace_length >= 2, trace, InputError)


@dataclass
class ExportResult:
    path: Path
    text_input: TextInput
    text_encoder_path: Path | None = None
    simplified: bool = False
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


class GraphModule(nn.Module):
    """Positional, tensor-only wrapper of ``FINE.predict`` in :func:`export.io.input_names` order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        text: Tensor,
        text_mask: Tensor,
        audio: Tensor,
        audio_mask: Tensor,
        vision: Tensor,
        vision_mask: Tensor,
        presence: Tensor,
    ) -> tuple[Tensor, Tensor]:
        features = {"text": text, "audio": audio, "vision": vision}
        masks = {"text": text_mask, "audio": audio_mask, "vision": vision_mask}
        return self.model.predict(features, masks, presence)  # type: ignore[operator]


class TextEncoderGraph(nn.Module):
    """``text_ids, text_mask -> text_embeddings`` for an encoder exported outside the main graph."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, text_ids: Tensor, text_mask: Tensor) -> Tensor:
        return self.encoder(text_ids, text_mask)


def vocab_size(model: nn.Module, default: int = 100) -> int:
    """The text encoder's vocabulary size (token ids for tracing and benchmarks), or ``default``."""
    encoder = getattr(model, "text_encoder", None)
    if encoder is None:
        return default
    return int(encoder.backbone.config.vocab_size)


def _trace_export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    names: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    module.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one (which needs onnxscript);
        # it traces this graph exactly, and the shape-check TracerWarnings are about Python asserts.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    module.eval()  # the exporter restores the module's *previous* mode on every submodule


def _check_graph(onnx: Any, path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise InputError(f"{path}: exported graph fails onnx.checker ({str(exc).splitlines()[0]})") from None


def _ort_outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _simplify(onnx: Any, path: Path, feeds: dict[str, np.ndarray]) -> bool:
    """Simplify in place with onnxslim when installed; keep the result only if outputs still match."""
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim not installed: graph not simplified (pip install onnxslim)")
        return False
    before = _ort_outputs(path, feeds)
    original = onnx.load(str(path))
    try:
        slim = onnxslim.slim(original)
    except Exception as exc:  # a simplifier bug must never break export
        log.warning("onnxslim failed (%s); keeping the unsimplified graph", exc)
        return False
    del slim.metadata_props[:]
    slim.metadata_props.extend(original.metadata_props)
    tmp = path.with_suffix(".slim.onnx")
    onnx.save(slim, str(tmp))
    after = _ort_outputs(tmp, feeds)
    if before is not None and after is not None:
        err = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
        if err > 1e-5:
            log.warning("onnxslim changed outputs by %.2e; keeping the unsimplified graph", err)
            tmp.unlink()
            return False
    tmp.replace(path)
    log.info("simplified %s: %d -> %d nodes", path.name, len(original.graph.node), len(slim.graph.node))
    return True


def _set_metadata(onnx: Any, path: Path, meta: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "FINE multimodal sentiment (inference graph)"
    onnx.save(model, str(path))


def export_onnx(
    model: nn.Module,
    out: str | Path,
    options: ExportOptions | None = None,
    card: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` (a FINE) to ``out``; returns where things were written. ``model`` is unchanged."""
    onnx = _onnx()
    options = options or ExportOptions()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    text_input = text_input_of(model, options.text_encoder)
    graph_model = model if text_input == "ids" else fusion_only(model)
    config: FineConfig = model.config  # type: ignore[assignment]
    vocab = vocab_size(model)
    lengths = {
        m: options.trace_length + i for i, m in enumerate(MODALITIES)
    }  # distinct, so axes stay distinct
    feeds = example_feeds(config, text_input, options.trace_batch, lengths, vocab_size=min(vocab, 1000))
    names = input_names(text_input)
    features, masks, presence = feeds_to_tensors(feeds)
    args = (
        features["text"], masks["text"], features["audio"], masks["audio"],
        features["vision"], masks["vision"], presence,
    )  # fmt: skip
    log.info("exporting %s (text input: %s, opset %d)", out, text_input, options.opset)
    _trace_export(
        GraphModule(graph_model),
        args,
        out,
        names,
        list(OUTPUT_NAMES),
        dynamic_axes(text_input),
        options.opset,
    )
    meta = metadata_for(model, text_input, options.opset, card)
    _set_metadata(onnx, out, meta)
    if options.check:
        _check_graph(onnx, out)
    simplified = _simplify(onnx, out, feeds) if options.simplify else False
    if options.check and simplified:
        _check_graph(onnx, out)
    result = ExportResult(path=out, text_input=text_input, simplified=simplified, metadata=meta)
    if model.text_encoder is not None and options.text_encoder == "outside":
        result.text_encoder_path = export_text_encoder(
            model, out.with_name(out.stem + ".text_encoder.onnx"), options
        )
    return result


def export_text_encoder(model: nn.Module, out: Path, options: ExportOptions) -> Path:
    """Write the model's text encoder alone: ``text_ids, text_mask -> text_embeddings``."""
    onnx = _onnx()
    encoder = model.text_encoder
    assert isinstance(encoder, nn.Module)
    config: FineConfig = model.config  # type: ignore[assignment]
    b, t = options.trace_batch, options.trace_length
    ids = torch.randint(1, min(vocab_size(model), 1000), (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, t // 2 :] = False
    axes = {"text_ids": {0: "batch", 1: "t_text"}, "text_mask": {0: "batch", 1: "t_text"}}
    axes["text_embeddings"] = {0: "batch", 1: "t_text"}
    _trace_export(
        TextEncoderGraph(encoder),
        (ids, mask),
        out,
        ["text_ids", "text_mask"],
        ["text_embeddings"],
        axes,
        options.opset,
    )
    meta = {
        META_PREFIX + "role": "text_encoder",
        META_PREFIX + "text_encoder_source": str(config.text_encoder.source),
    }
    _set_metadata(onnx, out, meta)
    if options.check:
        _check_graph(onnx, out)
    return out
