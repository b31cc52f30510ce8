"""onnxruntime backend: CPU, CUDA or TensorRT execution provider, one lazily created session."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.batch import ModalityBatch
from core.errors import InputError, MissingDependencyError, optional_import
from export.io import TextInput
from export.metadata import fine_entries
from export.runtime.base import Runner
from export.runtime.profiles import profile_shapes

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

# "extended" for FP16 graphs on CPU: onnxruntime 1.32's level-ALL CPU layout passes crash on them.
OPTIMIZATION_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "none": "ORT_DISABLE_ALL",
}


def import_onnxruntime() -> Any:
    return optional_import(
        "onnxruntime",
        "the onnxruntime backend needs onnxruntime: pip install 'fine-msa[export]' "
        "(or onnxruntime-gpu for CUDA/TensorRT execution providers)",
    )


def available_providers() -> list[str]:
    """Short names (cpu, cuda, tensorrt) of the execution providers this onnxruntime build has."""
    try:
        ort = import_onnxruntime()
    except MissingDependencyError:
        return []
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in have]


def tensorrt_ep_options(onnx_path: Path, cache: Path, fp16: bool) -> dict[str, Any]:
    """TensorRT execution provider options: FP16, engine + timing cache, and explicit min/opt/max
    profiles (the same defaults as native engines) so dynamic shapes never trigger a rebuild."""
    cache.mkdir(parents=True, exist_ok=True)
    shapes = profile_shapes(onnx_path)

    def spec(i: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in dims[i])}" for name, dims in shapes.items())

    return {
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_profile_min_shapes": spec(0),
        "trt_profile_opt_shapes": spec(1),
        "trt_profile_max_shapes": spec(2),
    }


class OnnxRuntimeRunner(Runner):
    """Run an exported ``.onnx``. ``provider``: cpu | cuda | tensorrt (CPU is always the fallback).

    ``text_encoder_path``: the ``*.text_encoder.onnx`` written by an export with the encoder outside;
    when given, batches may carry token ids, which are encoded once per batch (not once per Shapley
    subset) before the main graph runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        provider: str = "cpu",
        threads: int | None = None,
        text_encoder_path: str | os.PathLike[str] | None = None,
        trt_cache_dir: str | os.PathLike[str] | None = None,
        trt_fp16: bool = True,
        optimization: str = "all",
    ) -> None:
        super().__init__()
        if provider not in PROVIDERS:
            raise InputError(f"unknown onnxruntime provider {provider!r}; choose one of {sorted(PROVIDERS)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(
                f"{self.path}: no such ONNX file; export one with 'fine export MODEL --onnx OUT'"
            )
        self.provider = provider
        self.threads = threads
        self.text_encoder_path = Path(text_encoder_path) if text_encoder_path else None
        self.trt_cache_dir = Path(trt_cache_dir) if trt_cache_dir else None
        self.trt_fp16 = trt_fp16
        if optimization not in OPTIMIZATION_LEVELS:
            raise InputError(f"optimization must be one of {list(OPTIMIZATION_LEVELS)}, got {optimization!r}")
        self.optimization = optimization
        self.name = f"onnxruntime-{provider}"
        self.metadata: dict[str, str] = {}
        self._session: Any = None
        self._encoder: Any = None
        self.text_input: TextInput = "embeddings"

    def _session_options(self, ort: Any) -> Any:
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[self.optimization]
        )
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        return so

    def _providers(self, ort: Any) -> list[Any]:
        have = set(ort.get_available_providers())
        wanted = PROVIDERS[self.provider]
        if wanted not in have:
            raise MissingDependencyError(
                f"onnxruntime has no {wanted} here (available: {sorted(have)}); "
                "install onnxruntime-gpu with a matching CUDA, or use --backend onnxruntime-cpu"
            )
        providers: list[Any] = []
        if self.provider == "tensorrt":
            cache = self.trt_cache_dir or self.path.parent / "trt_cache"
            providers.append((wanted, tensorrt_ep_options(self.path, cache, self.trt_fp16)))
        if self.provider in ("tensorrt", "cuda") and "CUDAExecutionProvider" in have:
            providers.append("CUDAExecutionProvider")
        providers.append("CPUExecutionProvider")
        return providers

    def _activate(self) -> None:
        ort = import_onnxruntime()
        so = self._session_options(ort)
        self._session = ort.InferenceSession(str(self.path), so, providers=self._providers(ort))
        self.metadata = fine_entries(self._session.get_modelmeta().custom_metadata_map)
        names = {i.name for i in self._session.get_inputs()}
        self.text_input = "ids" if "text_ids" in names else "embeddings"
        if self.text_encoder_path is not None:
            self._encoder = ort.InferenceSession(
                str(self.text_encoder_path), self._session_options(ort), providers=self._providers(ort)
            )
        log.info("onnxruntime session on %s: %s", self._session.get_providers()[0], self.path)

    def _prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._encoder is None or "text_ids" not in feeds or self.text_input == "ids":
            return feeds
        feeds = dict(feeds)
        ids = feeds.pop("text_ids")
        mask = feeds["text_mask"] & feeds["presence"][:, :1]  # FINE masks absent text for the encoder
        (feeds["text"],) = self._encoder.run(None, {"text_ids": ids, "text_mask": mask})
        return feeds

    def _batch_text_input(self, batch: ModalityBatch) -> TextInput:
        if self._encoder is not None and not batch.features["text"].dtype.is_floating_point:
            return "ids"  # encoded in _prepare
        return self.text_input

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        score, unimodal = self._session.run(None, feeds)
        return score, unimodal

    def _close(self) -> None:
        self._session = None
        self._encoder = None

    def describe(self) -> str:
        if self._session is None:
            return self.name
        return f"{self.name} ({', '.join(self._session.get_providers())})"
