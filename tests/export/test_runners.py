"""Runner lifecycle, identical outputs across backends, and backend selection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.artifact import save_model
from core.errors import InputError, MissingDependencyError
from export.io import PREDICTION_FIELDS, Prediction
from export.runtime import available_backends, create_runner, find_model_files
from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from export.runtime.tensorrt_runner import TensorRTRunner
from export.runtime.torch_runner import TorchRunner
from tests.export.conftest import make_batch


def test_every_runner_returns_the_same_prediction_fields(small_model, small_onnx) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(small_model.config, 4, {"text": 6, "audio": 9, "vision": 2}, seed=1, p_absent=0.3)
    preds = []
    for runner in (TorchRunner(small_model), OnnxRuntimeRunner(small_onnx, threads=1)):
        with runner:
            assert runner.is_active
            pred = runner.infer(batch)
        assert not runner.is_active
        preds.append(pred)
    for pred in preds:
        assert isinstance(pred, Prediction)
        assert tuple(pred.as_dict()) == PREDICTION_FIELDS
        assert (
            pred.score.shape == (4,) and pred.unimodal.shape == (4, 3) and pred.contributions.shape == (4, 3)
        )
        assert pred.score.dtype == np.float32
    np.testing.assert_allclose(preds[0].score, preds[1].score, atol=1e-5)


def test_infer_without_contributions_matches_full_row(small_model) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(small_model.config, 3, {"text": 5, "audio": 5, "vision": 5}, seed=2, p_absent=0.3)
    runner = TorchRunner(small_model)
    plain = runner.infer(batch, contributions=False)
    full = runner.infer(batch)
    assert plain.contributions is None
    np.testing.assert_allclose(plain.score, full.score, atol=1e-6)
    np.testing.assert_allclose(plain.unimodal, full.unimodal, atol=1e-6)


def test_auto_backend_selection(small_model, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    artifact = save_model(small_model, tmp_path / "model")
    runner = create_runner(artifact, "auto")
    assert isinstance(runner, TorchRunner)  # no exported file yet
    shutil.copy(small_onnx, artifact / "model.onnx")
    files = find_model_files(artifact)
    assert files.artifact == artifact and files.onnx == artifact / "model.onnx" and files.engine is None
    runner = create_runner(artifact, "auto")
    assert isinstance(runner, OnnxRuntimeRunner) and runner.provider == "cpu"  # ORT beats torch
    assert isinstance(create_runner(artifact, "torch"), TorchRunner)
    assert isinstance(create_runner(small_onnx, "onnxruntime"), OnnxRuntimeRunner)
    batch = make_batch(small_model.config, 2, {"text": 4, "audio": 4, "vision": 4}, seed=3)
    with create_runner(artifact, "torch") as a, runner as b:
        np.testing.assert_allclose(a.infer(batch).contributions, b.infer(batch).contributions, atol=1e-5)


def test_backend_errors_are_one_line(small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="unknown backend"):
        create_runner(small_onnx, "openvino")
    with pytest.raises(InputError, match="no usable backend"):
        create_runner(small_onnx, "torch")  # an .onnx has no torch artifact
    with pytest.raises(InputError, match="no such"):
        create_runner(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="no such engine"):
        TensorRTRunner(tmp_path / "missing.engine")
    if "onnxruntime-cuda" not in available_backends():
        with pytest.raises(MissingDependencyError, match="CUDAExecutionProvider"):
            OnnxRuntimeRunner(small_onnx, "cuda").activate()


def test_tensorrt_runner_without_tensorrt_fails_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    runner = create_runner(engine, "tensorrt")
    with pytest.raises(MissingDependencyError, match="pip install tensorrt"):
        runner.activate()
    assert "tensorrt" not in available_backends()


def test_tensorrt_execution_provider_options(small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from export.runtime.onnxruntime_runner import tensorrt_ep_options

    opts = tensorrt_ep_options(small_onnx, tmp_path / "trt_cache", fp16=True)
    assert opts["trt_fp16_enable"] is True and (tmp_path / "trt_cache").is_dir()
    mins = dict(item.split(":") for item in opts["trt_profile_min_shapes"].split(","))
    maxs = dict(item.split(":") for item in opts["trt_profile_max_shapes"].split(","))
    assert mins["presence"] == "1x3" and maxs["presence"] == "64x3"
    assert mins["text"] == "1x1x16" and maxs["audio_mask"] == "64x256"
