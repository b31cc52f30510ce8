"""Runners: one interface (``activate / infer / close``) over torch, onnxruntime and TensorRT.

``create_runner(path, backend="auto")`` picks, in order, native TensorRT > onnxruntime on CUDA >
onnxruntime on CPU > torch, among the backends that are installed *and* have the file they need
(an ``.engine``, an ``.onnx`` or the model artifact). Every runner returns the same
:class:`~export.io.Prediction` (score, unimodal, contributions).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from core.errors import InputError, MissingDependencyError
from export.io import Prediction
from export.runtime.base import Runner

log = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "torch", "torch-cuda")
ALIASES = {
    "onnxruntime-gpu": "onnxruntime-cuda",
    "onnxruntime": "onnxruntime-cpu",
    "ort": "onnxruntime-cpu",
    "trt": "tensorrt",
}
AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "torch")

__all__ = [
    "BACKENDS",
    "ModelFiles",
    "Prediction",
    "Runner",
    "available_backends",
    "create_runner",
    "find_model_files",
]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def available_backends() -> list[str]:
    """Backends that can run on this machine, best first (files not considered)."""
    from export.runtime.onnxruntime_runner import available_providers

    have = []
    try:
        import tensorrt  # noqa: F401

        if _cuda():
            have.append("tensorrt")
    except ImportError:
        pass
    providers = available_providers()
    if "tensorrt" in providers:
        have.append("onnxruntime-tensorrt")
    if "cuda" in providers:
        have.append("onnxruntime-cuda")
    if "cpu" in providers:
        have.append("onnxruntime-cpu")
    if _cuda():
        have.append("torch-cuda")
    have.append("torch")
    return have


EXPRESSION_ONNX = "expression.onnx"  # the facial-expression encoder, written beside an exported model
EXPRESSION_ENGINE = "expression.engine"


@dataclass
class ModelFiles:
    artifact: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    text_encoder_onnx: Path | None = None
    expression_onnx: Path | None = None
    expression_engine: Path | None = None


def find_model_files(path: str | os.PathLike[str]) -> ModelFiles:
    """What a path offers: an ``.engine``, an ``.onnx``, or a directory with any of them and/or an artifact."""
    p = Path(path)
    files = ModelFiles()
    if p.is_file():
        if p.suffix in (".engine", ".plan"):
            files.engine = p
        elif p.suffix == ".onnx":
            files.onnx = p
        else:
            raise InputError(f"{p}: expected a .onnx, an .engine or a model directory")
    elif p.is_dir():
        if (p / "config.json").is_file():
            files.artifact = p
        onnx = sorted(
            x
            for x in p.glob("*.onnx")
            if not x.name.endswith((".text_encoder.onnx", ".fp16.onnx")) and x.name != EXPRESSION_ONNX
        )
        files.onnx = onnx[0] if onnx else None
        engines = sorted(x for x in p.glob("*.engine") if x.name != EXPRESSION_ENGINE)
        files.engine = engines[0] if engines else None
    else:
        raise InputError(f"{p}: no such file or directory")
    folder = p if p.is_dir() else p.parent
    files.expression_onnx = folder / EXPRESSION_ONNX if (folder / EXPRESSION_ONNX).is_file() else None
    files.expression_engine = folder / EXPRESSION_ENGINE if (folder / EXPRESSION_ENGINE).is_file() else None
    if files.onnx is not None:
        enc = files.onnx.with_name(files.onnx.stem + ".text_encoder.onnx")
        files.text_encoder_onnx = enc if enc.is_file() else None
    return files


def _normalise(backend: str) -> str:
    backend = ALIASES.get(backend, backend)
    if backend != "auto" and backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose auto or one of: {', '.join(BACKENDS)}")
    return backend


def create_runner(
    model: nn.Module | str | os.PathLike[str],
    backend: str = "auto",
    threads: int | None = None,
) -> Runner:
    """A runner for ``model`` (a FINE module, an artifact directory, an ``.onnx`` or an ``.engine``)."""
    backend = _normalise(backend)
    if isinstance(model, nn.Module):
        if backend not in ("auto", "torch", "torch-cuda"):
            raise InputError(f"backend {backend} needs an exported file; export the module first")
        from export.runtime.torch_runner import TorchRunner

        return TorchRunner(model, device="cuda" if backend == "torch-cuda" else "cpu", threads=threads)
    files = find_model_files(model)
    candidates = [b for b in AUTO_ORDER if b in available_backends()] if backend == "auto" else [backend]
    reasons = []
    for name in candidates:
        runner = _make(name, files, threads)
        if runner is not None:
            if backend == "auto":
                log.info("backend auto -> %s", name)
            return runner
        reasons.append(name)
    raise InputError(
        f"{model}: no usable backend among {', '.join(reasons)} (need an .engine for tensorrt, an .onnx for "
        "onnxruntime, a model artifact for torch)"
    )


def _make(name: str, files: ModelFiles, threads: int | None) -> Runner | None:
    if name == "tensorrt":
        if files.engine is None:
            return None
        from export.runtime.tensorrt_runner import TensorRTRunner

        return TensorRTRunner(files.engine)
    if name.startswith("onnxruntime-"):
        if files.onnx is None:
            return None
        from export.runtime.onnxruntime_runner import OnnxRuntimeRunner

        provider = name.removeprefix("onnxruntime-")
        return OnnxRuntimeRunner(
            files.onnx, provider, threads=threads, text_encoder_path=files.text_encoder_onnx
        )
    if name in ("torch", "torch-cuda"):
        if files.artifact is None:
            return None
        if name == "torch-cuda" and not _cuda():
            raise MissingDependencyError("backend torch-cuda needs a CUDA build of torch and a GPU")
        from export.runtime.torch_runner import TorchRunner

        return TorchRunner(files.artifact, device="cuda" if name == "torch-cuda" else "cpu", threads=threads)
    return None
