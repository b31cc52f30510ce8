"""Cast an FP32 ONNX graph to FP16 with FP32 islands and FP32 I/O (for strongly typed TensorRT 11).

TensorRT 11 dropped ``BuilderFlag.FP16``: precision comes from the graph's own types. This pass makes
every float tensor FP16 except the outputs of :data:`FP32_OPS` (normalisation and softmax statistics,
the sinusoidal position code, whose arguments reach hundreds of radians), inserts the casts where the
two regions meet, and keeps graph inputs and outputs in their original types, so a runner feeds the
same arrays to an FP16 engine as to an FP32 one. FP32 constants are clamped to the FP16 range
(``finfo(float32).min`` as a mask bias becomes -65504, never -inf, so no ``inf - inf`` NaN appears).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

FP32_OPS = frozenset(
    {
        "LayerNormalization",
        "Softmax",
        "ReduceMean",
        "ReduceSum",
        "Pow",
        "Sqrt",
        "Range",
        "Sin",
        "Cos",
        "Exp",
        "Log",
    }
)
FP16_MAX = float(np.finfo(np.float16).max)


def _to_fp16_tensor(onnx: Any, tensor: Any) -> Any:
    from onnx import numpy_helper

    arr = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), tensor.name)


def cast_model_fp16(model: Any) -> Any:
    """Return an FP16 copy of ``model`` (an ``onnx.ModelProto``) with FP32 islands and FP32 I/O."""
    import onnx
    from onnx import TensorProto, helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    graph = model.graph
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for n in graph.node
        for a in n.attribute
    ):
        raise ValueError("graphs with control flow (If/Loop/Scan) are not supported by the FP16 caster")
    elem: dict[str, int] = {}
    for v in [*graph.input, *graph.output, *graph.value_info]:
        elem[v.name] = v.type.tensor_type.elem_type
    for init in graph.initializer:
        elem[init.name] = init.data_type
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def wants_fp32(node: Any) -> bool:
        if node.op_type in FP32_OPS:
            return True
        # a Cast to float that only feeds FP32 ops (e.g. the sequence length for Range) stays FP32
        if node.op_type == "Cast" and all(c.op_type in FP32_OPS for o in node.output for c in consumers[o]):
            return bool(node.output) and any(consumers[o] for o in node.output)
        return False

    precision: dict[str, int] = {}  # actual type of every float tensor after the pass
    for inp in graph.input:
        if elem.get(inp.name) == FLOAT:
            precision[inp.name] = FLOAT
    for init in list(graph.initializer):
        if init.data_type != FLOAT:
            continue
        users = consumers[init.name]
        if users and not any(wants_fp32(u) for u in users):
            init.CopyFrom(_to_fp16_tensor(onnx, init))
            precision[init.name] = HALF
        else:
            precision[init.name] = FLOAT
    new_nodes: list[Any] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            out = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"{out}__cast"))
            casts[key] = out
        return casts[key]

    for node in graph.node:
        target = FLOAT if wants_fp32(node) else HALF
        for i, name in enumerate(node.input):
            have = precision.get(name)
            if have is not None and have != target:
                node.input[i] = cast(name, target)
        if target == HALF:
            if node.op_type == "Cast":
                for a in node.attribute:
                    if a.name == "to" and a.i == FLOAT:
                        a.i = HALF
            elif node.op_type == "Constant" or node.op_type == "ConstantOfShape":
                for a in node.attribute:
                    if a.name == "value" and a.t.data_type == FLOAT:
                        a.t.CopyFrom(_to_fp16_tensor(onnx, a.t))
        for out in node.output:
            if elem.get(out) == FLOAT:
                precision[out] = target
        new_nodes.append(node)
    outputs = {o.name for o in graph.output}
    for out in graph.output:
        if elem.get(out.name) == FLOAT and precision.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name and i in outputs else i for i in node.input]
            new_nodes.append(
                helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"{out.name}__cast_out")
            )
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def cast_file_fp16(src: str | Path, dst: str | Path) -> Path:
    import onnx

    model = cast_model_fp16(onnx.load(str(src)))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return Path(dst)
