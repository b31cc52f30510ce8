"""Optimisation profiles of an exported graph: the (min, opt, max) shape of every input.

Shared by the TensorRT execution provider of onnxruntime (a runtime) and the native engine builder
(:mod:`export.tensorrt_build`), so both cover the same shapes. A dynamic axis is named in the graph
(``batch``, ``t_text``, ``t_audio``, ``t_vision``: :func:`export.io.dynamic_axes`) and gets its range
from ``range_for(axis)``. Reading the graph's inputs needs the ``onnx`` package (the TensorRT
execution provider and the engine builder only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from export.metadata import load_onnx

Range = tuple[int, int, int]

# A runner sends 8·b rows for Shapley contributions, so max batch 64 serves 8 samples per call.
DEFAULT_BATCH: Range = (1, 8, 64)
DEFAULT_LENGTH: Range = (1, 50, 256)


class Ranges(Protocol):
    def range_for(self, axis: str) -> Range: ...


class DefaultRanges:
    """``DEFAULT_BATCH`` for the batch axis, ``DEFAULT_LENGTH`` for every sequence axis."""

    def range_for(self, axis: str) -> Range:
        return DEFAULT_BATCH if axis == "batch" else DEFAULT_LENGTH


def graph_inputs(onnx_path: str | Path) -> list[tuple[str, list[int | str]]]:
    """``(name, dims)`` of the ONNX graph inputs; a dynamic dim is its symbolic name."""
    out = []
    for inp in load_onnx(onnx_path).graph.input:
        dims: list[int | str] = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        out.append((inp.name, dims))
    return out


def profile_shapes(
    onnx_path: str | Path, ranges: Ranges | None = None
) -> dict[str, tuple[tuple[int, ...], ...]]:
    """``name -> (min, opt, max)`` shapes for every graph input, from its dynamic axis names."""
    ranges = ranges or DefaultRanges()
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    for name, dims in graph_inputs(onnx_path):
        lo, opt, hi = [], [], []
        for d in dims:
            r = ranges.range_for(d) if isinstance(d, str) else (d, d, d)
            lo.append(r[0])
            opt.append(r[1])
            hi.append(r[2])
        shapes[name] = (tuple(lo), tuple(opt), tuple(hi))
    return shapes
