"""ONNX export (and a TensorRT engine) of the facial-expression encoder, checked against torch.

    fine expression export --onnx expression.onnx [--tensorrt expression.engine] [--encoder DIR]

The graph takes ``face (batch, 1, s, s)`` float32 gray crops (0-255, aligned by
:func:`core.features.expression.align_face`) and returns ``logits``, ``valence`` and ``embedding``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from core.errors import InputError
from core.features.expression import ExpressionEncoder

log = logging.getLogger(__name__)

PARITY_TOL = 1e-4


def export_onnx(encoder: ExpressionEncoder, out: str | os.PathLike[str], opset: int = 17) -> float:
    """Write the encoder as ONNX (dynamic batch) and return the max |onnxruntime - torch| over a check
    batch; raises when it exceeds ``PARITY_TOL``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    s = encoder.config.size
    net = encoder.net.eval()
    example = torch.rand(2, 1, s, s) * 255
    tmp = out.with_name(out.name + ".tmp")
    torch.onnx.export(
        net,
        (example,),
        str(tmp),
        input_names=["face"],
        output_names=["logits", "valence", "embedding"],
        dynamic_axes={
            "face": {0: "batch"},
            "logits": {0: "batch"},
            "valence": {0: "batch"},
            "embedding": {0: "batch"},
        },
        opset_version=opset,
        dynamo=False,
    )
    err = parity(encoder, tmp)
    if err > PARITY_TOL:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: exported encoder differs from torch by {err:.2e} (> {PARITY_TOL:g})")
    os.replace(tmp, out)
    log.info("expression encoder exported to %s (max |onnx - torch| %.1e)", out, err)
    return err


def parity(encoder: ExpressionEncoder, onnx_path: Path, n: int = 16, seed: int = 0) -> float:
    from export.runtime.expression_runner import OnnxExpressionBackend

    s = encoder.config.size
    x = np.random.default_rng(seed).uniform(0, 255, (n, 1, s, s)).astype(np.float32)
    with torch.inference_mode():
        ref = [t.numpy() for t in encoder.net(torch.from_numpy(x))]
    got = OnnxExpressionBackend(onnx_path)(x)
    return float(max(np.abs(a - b).max() for a, b in zip(ref, got)))


def build_engine(onnx_path: Path, out: Path, precision: str = "fp16") -> Path:
    """A TensorRT engine of the encoder (batch 1-64, opt 8), through the fusion model's engine builder."""
    from export.tensorrt_build import EngineOptions
    from export.tensorrt_build import build_engine as build

    return build(onnx_path, out, EngineOptions(precision=precision, batch=(1, 8, 64)))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """``fine expression export``."""
    import argparse

    from core.errors import run_cli
    from core.features.expression import load_encoder

    p = argparse.ArgumentParser(
        prog="fine expression export",
        description="export the facial-expression encoder to ONNX (and TensorRT), checked against torch",
        epilog="examples:\n  fine expression export --onnx out/expression.onnx\n"
        "  fine expression export --onnx out/expression.onnx --tensorrt out/expression.engine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--encoder", type=Path, help="encoder directory (default: the shipped one)")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--tensorrt", type=Path, help="also build a TensorRT engine here (needs tensorrt + a GPU)")
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    args = p.parse_args(argv)

    def run(a: argparse.Namespace) -> int:
        enc = load_encoder(a.encoder)
        err = export_onnx(enc, a.onnx)
        print(f"{a.onnx}: max |onnxruntime - torch| = {err:.1e}")
        if a.tensorrt:
            print(f"{build_engine(a.onnx, a.tensorrt, a.precision)}: TensorRT engine ({a.precision})")
        return 0

    return run_cli("fine expression export", run, args)
