"""Backends for the facial-expression encoder: the same runtimes as the fusion model.

Each backend is a callable ``crops (n, 1, s, s) float32 -> (logits, valence, embedding)`` that
:class:`core.features.expression.ExpressionEncoder` runs in place of torch (pre- and post-processing stay
there, so every backend gives the same outputs). :func:`expression_backend` picks one to match the fusion
model's runner from the files ``fine export`` writes beside the model: ``expression.engine`` (TensorRT),
``expression.onnx`` (onnxruntime), else torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]
OUTPUT_NAMES = ("logits", "valence", "embedding")


class OnnxExpressionBackend:
    """An onnxruntime session over ``expression.onnx`` (CPU, or the CUDA provider where asked)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = 1, provider: str = "cpu") -> None:
        from export.runtime.onnxruntime_runner import PROVIDERS, import_onnxruntime

        ort = import_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file; write it with 'fine expression export --onnx'")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        have = set(ort.get_available_providers())
        providers = list(
            dict.fromkeys(p for p in (PROVIDERS.get(provider), "CPUExecutionProvider") if p in have)
        )
        self._session = ort.InferenceSession(str(self.path), so, providers=providers)
        self.name = f"onnxruntime-{provider}"

    def __call__(self, crops: np.ndarray) -> Outputs:
        logits, valence, emb = self._session.run(list(OUTPUT_NAMES), {"face": np.ascontiguousarray(crops)})
        return logits, valence, emb


class TensorRTExpressionBackend:
    """A TensorRT engine of ``expression.onnx``. Runtime and logger outlive the engine (TensorRT's rule)."""

    def __init__(self, engine_path: str | os.PathLike[str], device: int = 0) -> None:
        import torch

        from export.runtime.tensorrt_runner import import_tensorrt

        trt = self._trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise MissingDependencyError("the TensorRT backend needs a CUDA GPU (torch.cuda is unavailable)")
        self.path = Path(engine_path)
        torch.cuda.set_device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise InputError(f"{self.path}: TensorRT {trt.__version__} cannot load this engine; rebuild it")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        self.max_batch = int(self._engine.get_tensor_profile_shape("face", 0)[2][0])
        self.name = "tensorrt"

    def __call__(self, crops: np.ndarray) -> Outputs:
        parts = [self._chunk(crops[i : i + self.max_batch]) for i in range(0, len(crops), self.max_batch)]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    def _chunk(self, crops: np.ndarray) -> Outputs:
        import torch

        ctx = self._context
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to("cuda", non_blocking=True)
            if not ctx.set_input_shape("face", tuple(x.shape)):
                raise InputError(
                    f"{self.path}: a batch of {x.shape[0]} faces is outside the engine's profile"
                )
            ctx.set_tensor_address("face", x.data_ptr())
            outs = {}
            for name in OUTPUT_NAMES:
                outs[name] = torch.empty(
                    tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device="cuda"
                )
                ctx.set_tensor_address(name, outs[name].data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise InputError(f"{self.path}: TensorRT execution failed")
        self._stream.synchronize()
        return tuple(outs[n].cpu().numpy() for n in OUTPUT_NAMES)  # type: ignore[return-value]


def expression_backend(runner_name: str, files: Any, threads: int | None = 1) -> Any:
    """The expression-encoder backend matching the fusion model's runner, from the files exported beside
    the model (``expression.engine`` / ``expression.onnx``, see ``fine export``); ``None`` (torch) when
    there are none. Nothing is built here: the runtime never imports the exporters."""
    try:
        if runner_name.startswith("tensorrt") and files.expression_engine is not None:
            return TensorRTExpressionBackend(files.expression_engine)
        if runner_name.startswith(("onnxruntime", "tensorrt")) and files.expression_onnx is not None:
            provider = "cpu" if runner_name.endswith("cpu") else "cuda"
            return OnnxExpressionBackend(files.expression_onnx, threads=threads, provider=provider)
    except (MissingDependencyError, ImportError, InputError) as exc:
        log.warning("expression encoder stays on torch: %s", exc)
    return None
