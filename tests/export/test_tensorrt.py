"""TensorRT: everything up to ``import tensorrt`` runs everywhere; engine parity under the marker."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

from core.errors import InputError, MissingDependencyError
from export.compare import compare_runners
from export.fp16 import cast_model_fp16
from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from export.runtime.torch_runner import TorchRunner
from export.tensorrt_build import EngineOptions, build_engine, cache_key, cast_onnx_fp16, profile_shapes
from tests.export.conftest import make_batch

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
# Task-level tolerance for FP16: scores live in [-3, 3]; 0.05 is under 1% of the range and far below the
# 0.5 step of an Acc-7 bin. FP32 engines must match like onnxruntime does.
FP16_ATOL = 0.05
FP32_ATOL = 1e-3


def test_engine_options_are_validated() -> None:
    assert EngineOptions().precision == "fp16"
    with pytest.raises(InputError, match="precision"):
        EngineOptions(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min <= opt <= max"):
        EngineOptions(batch=(8, 1, 64))
    with pytest.raises(InputError, match="unknown modalities"):
        EngineOptions(lengths={"smell": (1, 2, 3)})
    with pytest.raises(InputError, match="calibration"):
        EngineOptions(precision="int8")


def test_profile_shapes_cover_every_dynamic_axis(small_onnx) -> None:  # type: ignore[no-untyped-def]
    shapes = profile_shapes(
        small_onnx, EngineOptions(batch=(1, 8, 64), length=(1, 50, 256), lengths={"text": (2, 32, 128)})
    )
    assert set(shapes) == {"text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "presence"}
    assert shapes["presence"] == ((1, 3), (8, 3), (64, 3))
    assert shapes["text"] == ((1, 2, 16), (8, 32, 16), (64, 128, 16))
    assert shapes["text_mask"] == ((1, 2), (8, 32), (64, 128))
    assert shapes["audio"] == ((1, 1, 5), (8, 50, 5), (64, 256, 5))
    assert shapes["vision_mask"] == ((1, 1), (8, 50), (64, 256))


def test_cache_key_separates_version_gpu_precision_and_profile(small_onnx) -> None:  # type: ignore[no-untyped-def]
    base = cache_key(small_onnx, "10.3.0", "orin-sm87", EngineOptions())
    assert base == cache_key(small_onnx, "10.3.0", "orin-sm87", EngineOptions())
    assert "trt10.3.0" in base and "orin-sm87" in base and "fp16" in base
    others = {
        cache_key(small_onnx, "11.1.0", "orin-sm87", EngineOptions()),
        cache_key(small_onnx, "10.3.0", "nvidia-geforce-rtx-4090-sm89", EngineOptions()),
        cache_key(small_onnx, "10.3.0", "orin-sm87", EngineOptions(precision="fp32")),
        cache_key(small_onnx, "10.3.0", "orin-sm87", EngineOptions(batch=(1, 8, 128))),
    }
    assert base not in others and len(others) == 4


def test_fp16_graph_for_strongly_typed_tensorrt(small_model, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The TensorRT 11 FP16 path: an FP16 ONNX with FP32 I/O, checked numerically with onnxruntime."""
    path = cast_onnx_fp16(small_onnx, tmp_path / "small.fp16.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    kinds = {
        i.data_type
        for i in model.graph.initializer
        if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    assert onnx.TensorProto.FLOAT16 in kinds
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [
        i.type.tensor_type.elem_type for i in onnx.load(str(small_onnx)).graph.input
    ]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    batches = [
        make_batch(small_model.config, 8, {"text": 40, "audio": 200, "vision": 9}, seed=5, p_absent=0.2)
    ]
    with OnnxRuntimeRunner(path, threads=1, optimization="extended") as runner:
        (result,) = compare_runners(TorchRunner(small_model), [runner], batches)
    print(f"FP16 graph (onnxruntime CPU): {result}")
    assert result.ok(FP16_ATOL), result
    assert result.worst > 1e-7  # it really computes in reduced precision


def test_fp16_caster_clamps_mask_bias(small_onnx) -> None:  # type: ignore[no-untyped-def]
    from onnx import numpy_helper

    model = cast_model_fp16(onnx.load(str(small_onnx)))
    for node in model.graph.node:
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT16:
                assert np.isfinite(numpy_helper.to_array(a.t)).all()


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_build_without_tensorrt_is_one_clear_error(small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MissingDependencyError) as info:
        build_engine(small_onnx, tmp_path / "m.engine", EngineOptions(cache_dir=str(tmp_path)))
    msg = str(info.value)
    assert "\n" not in msg and "TensorRT is not installed" in msg and "pip install tensorrt" in msg


# ------------------------------------------------------------------------------------------------
# On a machine with TensorRT and a GPU


@pytest.fixture(scope="module")
def trt_ready() -> None:
    pytest.importorskip("tensorrt")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")


@pytest.mark.tensorrt
@pytest.mark.parametrize(("precision", "atol"), [("fp32", FP32_ATOL), ("fp16", FP16_ATOL)])
def test_tensorrt_engine_matches_torch(trt_ready, small_model, small_onnx, tmp_path, precision, atol) -> None:  # type: ignore[no-untyped-def]
    from export.runtime.tensorrt_runner import TensorRTRunner

    options = EngineOptions(
        precision=precision, batch=(1, 8, 64), length=(1, 50, 256), cache_dir=str(tmp_path)
    )
    engine = build_engine(small_onnx, tmp_path / f"small.{precision}.engine", options)
    assert engine.with_suffix(".json").is_file()
    batches = [
        make_batch(small_model.config, b, lengths, seed=b, p_absent=0.2)
        for b, lengths in [
            (1, {"text": 3, "audio": 1, "vision": 9}),
            (8, {"text": 50, "audio": 120, "vision": 7}),
        ]
    ]
    with TensorRTRunner(engine) as runner:
        (result,) = compare_runners(TorchRunner(small_model), [runner], batches)
    print(f"TensorRT {precision}: {result}")
    assert result.ok(atol), result
    # the same ONNX, TensorRT, GPU, precision and profile is a cache hit: no rebuild
    cached = build_engine(small_onnx, None, options)
    stamp = cached.stat().st_mtime_ns
    assert build_engine(small_onnx, None, options) == cached and cached.stat().st_mtime_ns == stamp


@pytest.mark.tensorrt
def test_tensorrt_is_auto_backend(trt_ready, small_model, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from export.runtime import create_runner
    from export.runtime.tensorrt_runner import TensorRTRunner

    shutil.copy(small_onnx, tmp_path / "model.onnx")
    build_engine(
        tmp_path / "model.onnx", tmp_path / "model.engine", EngineOptions(cache_dir=str(tmp_path / "c"))
    )
    assert isinstance(create_runner(tmp_path, "auto"), TensorRTRunner)


@pytest.mark.tensorrt
def test_tensorrt_runner_keeps_runtime_and_logger_alive(trt_ready, small_model, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The engine is only valid while the Runtime (and its Logger) it came from live: the runner holds
    them, and still infers after a garbage collection; closing releases all of them."""
    import gc

    from export.runtime.tensorrt_runner import TensorRTRunner

    options = EngineOptions(precision="fp32", batch=(1, 8, 64), length=(1, 50, 256), cache_dir=str(tmp_path))
    engine = build_engine(small_onnx, tmp_path / "small.engine", options)
    batch = make_batch(small_model.config, 2, {"text": 5, "audio": 7, "vision": 9}, seed=3)
    runner = TensorRTRunner(engine)
    with runner:
        assert runner._runtime is not None and runner._logger is not None
        first = runner.infer(batch).score
        gc.collect()
        again = runner.infer(batch).score
        np.testing.assert_allclose(again, first, atol=1e-6)
        assert np.isfinite(first).all()
    assert runner._runtime is None and runner._engine is None and runner._context is None


@pytest.mark.tensorrt
def test_tensorrt_runner_refuses_shapes_outside_the_profile(
    trt_ready, small_model, small_onnx, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """set_input_shape's answer is checked: a sequence longer than the profile's max is one clear error,
    not garbage outputs or a crash."""
    from export.runtime.tensorrt_runner import TensorRTRunner

    options = EngineOptions(precision="fp32", batch=(1, 8, 64), length=(1, 8, 16), cache_dir=str(tmp_path))
    engine = build_engine(small_onnx, tmp_path / "narrow.engine", options)
    ok = make_batch(small_model.config, 1, {"text": 4, "audio": 16, "vision": 3}, seed=1)
    too_long = make_batch(small_model.config, 1, {"text": 4, "audio": 40, "vision": 3}, seed=1)
    with TensorRTRunner(engine) as runner:
        assert np.isfinite(runner.infer(ok).score).all()
        with pytest.raises(InputError, match="outside the engine's optimisation profile"):
            runner.infer(too_long)
