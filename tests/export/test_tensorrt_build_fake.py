"""The TensorRT build path driven against a recording stand-in for the ``tensorrt`` module.

No GPU or TensorRT here, so a fake module records the API calls: this checks the 10.x path (weakly
typed network + ``BuilderFlag.FP16``) and the 11.x path (no precision flags: an FP16-cast ONNX, strongly
typed network), the optimisation profile and the engine cache, up to the plan bytes.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import onnx
import pytest

from core.errors import InputError
from export import tensorrt_build
from export.tensorrt_build import EngineOptions, build_engine


def fake_tensorrt(version: str, calls: dict) -> types.ModuleType:  # type: ignore[type-arg]
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    flags = {"FP16": "FP16", "INT8": "INT8"} if major < 11 else {}
    trt.BuilderFlag = types.SimpleNamespace(**flags, TF32="TF32")  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:  # type: ignore[type-arg]
            calls.setdefault("shapes", {})[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls["workspace"] = size

        def set_flag(self, flag: str) -> None:
            calls.setdefault("flags", []).append(flag)

        def add_optimization_profile(self, profile: Profile) -> None:
            calls["profiles"] = calls.get("profiles", 0) + 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> object:
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: object, config: Config) -> bytes:
            calls["builds"] = calls.get("builds", 0) + 1
            return b"PLAN-" + version.encode()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: object, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            model = onnx.load(path)
            calls["parsed"] = Path(path).name
            calls["parsed_types"] = {i.data_type for i in model.graph.initializer}
            return True

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser  # type: ignore[attr-defined]
    return trt


@pytest.fixture
def fake(monkeypatch):  # type: ignore[no-untyped-def]
    def install(version: str) -> dict:  # type: ignore[type-arg]
        calls: dict = {}  # type: ignore[type-arg]
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, calls))
        monkeypatch.setattr(tensorrt_build, "gpu_id", lambda: "fake-gpu-sm87")
        return calls

    return install


def test_tensorrt_10_uses_the_fp16_builder_flag(fake, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    calls = fake("10.3.0")
    options = EngineOptions(batch=(1, 8, 64), length=(1, 50, 256), cache_dir=str(tmp_path / "cache"))
    engine = build_engine(small_onnx, tmp_path / "out" / "m.engine", options)
    assert engine.read_bytes() == b"PLAN-10.3.0"
    assert calls["flags"] == ["FP16"] and calls["network_flags"] == 0  # weakly typed
    assert calls["parsed"] == small_onnx.name and onnx.TensorProto.FLOAT16 not in calls["parsed_types"]
    assert calls["profiles"] == 1 and calls["shapes"]["presence"] == ((1, 3), (8, 3), (64, 3))
    assert calls["shapes"]["audio"] == ((1, 1, 5), (8, 50, 5), (64, 256, 5))
    assert calls["workspace"] == 2048 << 20
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["tensorrt_version"] == "10.3.0" and sidecar["gpu"] == "fake-gpu-sm87"
    assert sidecar["options"]["precision"] == "fp16" and sidecar["metadata"]["text_input"] == "embeddings"


def test_tensorrt_11_builds_a_strongly_typed_fp16_graph(fake, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    calls = fake("11.1.0")
    build_engine(small_onnx, tmp_path / "m.engine", EngineOptions(cache_dir=str(tmp_path / "cache")))
    assert "flags" not in calls  # no precision builder flags in 11.x
    assert calls["network_flags"] == 1  # STRONGLY_TYPED requested (ignored, always on, in 11.x)
    assert calls["parsed"].endswith(".fp16.onnx") and onnx.TensorProto.FLOAT16 in calls["parsed_types"]
    assert not list((tmp_path / "cache").glob(".*.work"))  # the FP16 scratch graph is cleaned up


def test_tensorrt_11_refuses_int8_without_qdq(fake, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake("11.1.0")
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"")
    options = EngineOptions(precision="int8", calibration=str(calib), cache_dir=str(tmp_path))
    with pytest.raises(InputError, match="Q/DQ"):
        build_engine(small_onnx, None, options)


def test_engine_cache_by_version_gpu_and_precision(fake, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path / "cache")
    calls = fake("10.3.0")
    first = build_engine(small_onnx, None, EngineOptions(cache_dir=cache))
    assert build_engine(small_onnx, None, EngineOptions(cache_dir=cache)) == first
    assert calls["builds"] == 1  # second call: cache hit
    assert calls.pop("flags") == ["FP16"]
    build_engine(small_onnx, None, EngineOptions(precision="fp32", cache_dir=cache))
    assert calls["builds"] == 2 and "flags" not in calls  # FP32: no precision flag
    calls = fake("10.4.0")  # a TensorRT upgrade never reuses an old engine
    upgraded = build_engine(small_onnx, None, EngineOptions(cache_dir=cache))
    assert calls["builds"] == 1 and upgraded != first and "trt10.4.0" in upgraded.name
    assert len(list(Path(cache).glob("*.engine"))) == 3
