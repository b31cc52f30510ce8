"""Native TensorRT backend (10.x and 11.x name-based I/O API), CUDA buffers through torch.

torch is the one CUDA array library every FINE install has (JetPack ships a CUDA torch), so no pycuda or
cuda-python is needed: inputs are copied to torch CUDA tensors, their pointers bound with
``set_tensor_address`` and the engine runs with ``execute_async_v3`` on a torch stream.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, MissingDependencyError, optional_import
from export.io import TextInput
from export.runtime.base import Runner

log = logging.getLogger(__name__)

TENSORRT_HINT = (
    "TensorRT is not installed: on Jetson use JetPack 6's python3-libnvinfer (TensorRT 10.3); "
    "on a desktop GPU 'pip install tensorrt' (CUDA 12); without it, run the ONNX with onnxruntime"
)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a MissingDependencyError with the install hint."""
    return optional_import("tensorrt", TENSORRT_HINT)


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.bool: torch.bool,
    }
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if dtype not in table:
        raise InputError(f"engine tensor type {dtype} is not supported by this runner")
    return table[dtype]


class TensorRTRunner(Runner):
    """Run a serialized engine built by :func:`export.tensorrt_build.build_engine`."""

    def __init__(self, engine_path: str | os.PathLike[str], device: int = 0) -> None:
        super().__init__()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise InputError(
                f"{self.path}: no such engine; build one with 'fine export MODEL --tensorrt OUT'"
            )
        self.device = device
        self.name = "tensorrt"
        self.sidecar: dict[str, Any] = {}
        self._trt: Any = None
        # The Logger and Runtime must outlive the engine deserialised from them (TensorRT's Python API
        # does not keep them alive; dropping them leaves the engine with dangling pointers).
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self.max_batch = 1
        self.text_input: TextInput = "embeddings"

    def _activate(self) -> None:
        import torch

        trt = self._trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise MissingDependencyError("the TensorRT backend needs a CUDA GPU (torch.cuda is unavailable)")
        torch.cuda.set_device(self.device)
        sidecar = self.path.with_suffix(".json")
        self.sidecar = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise InputError(
                f"{self.path}: TensorRT {trt.__version__} cannot load this engine (built with "
                f"{self.sidecar.get('tensorrt_version', 'another version')} on {self.sidecar.get('gpu', '?')}); rebuild it"
            )
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.text_input = "ids" if "text_ids" in self._inputs else "embeddings"
        self.max_batch = int(self._engine.get_tensor_profile_shape("presence", 0)[2][0])
        log.info("TensorRT %s engine %s (max batch %d)", trt.__version__, self.path.name, self.max_batch)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n = feeds["presence"].shape[0]
        if n <= self.max_batch:
            return self._run_chunk(feeds)
        parts = [
            self._run_chunk({k: v[i : i + self.max_batch] for k, v in feeds.items()})
            for i in range(0, n, self.max_batch)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _run_chunk(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        trt, ctx = self._trt, self._context
        keep = []
        with torch.cuda.stream(self._stream):
            for name in self._inputs:
                want = _torch_dtype(trt, self._engine.get_tensor_dtype(name))
                t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", non_blocking=True).to(want)
                keep.append(t)
                if not ctx.set_input_shape(name, tuple(t.shape)):
                    raise InputError(
                        f"{self.path}: input {name!r} of shape {tuple(t.shape)} is outside the engine's "
                        "optimisation profile; rebuild it with wider --batch/--length ranges"
                    )
                ctx.set_tensor_address(name, t.data_ptr())
            outs = {}
            for name in self._outputs:
                shape = tuple(ctx.get_tensor_shape(name))
                dtype = _torch_dtype(trt, self._engine.get_tensor_dtype(name))
                outs[name] = torch.empty(shape, dtype=dtype, device="cuda")
                ctx.set_tensor_address(name, outs[name].data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise InputError(
                    f"{self.path}: TensorRT execution failed (input shapes outside the profile?)"
                )
        self._stream.synchronize()
        return outs["score"].float().cpu().numpy(), outs["unimodal"].float().cpu().numpy()

    def _close(self) -> None:
        # Reverse order of creation: context, engine, then the runtime and logger they depend on.
        self._context = None
        self._engine = None
        self._runtime = None
        self._logger = None
        self._stream = None
