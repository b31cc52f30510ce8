"""``fine export`` and ``fine bench runtime`` as a user runs them (through the ``fine`` dispatcher)."""

from __future__ import annotations

import importlib.util
import json

import onnx
import pytest

from app.cli import main as fine
from core.artifact import save_model

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def artifact(small_model, tmp_path_factory):  # type: ignore[no-untyped-def]
    return save_model(small_model, tmp_path_factory.mktemp("artifact") / "small")


def test_fine_export_onnx(artifact, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "deploy" / "model.onnx"
    assert fine(["export", str(artifact), "--onnx", str(out), "--no-simplify"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "parity:" in printed
    worst = max(float(x.split()[-1]) for x in printed.split("max |Δ|")[1].strip().split(","))
    assert worst < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["fine.card"])["name"] == "fine"
    assert json.loads(meta["fine.config"])["d_model"] == 32


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_fine_export_tensorrt_without_tensorrt(artifact, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = fine(["export", str(artifact), "--tensorrt", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("fine export: TensorRT is not installed")
    assert "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()  # failed fast, before exporting


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/model", "--onnx", "x.onnx"], "no config.json"),
        (["{artifact}"], "nothing to do"),
        (["{artifact}", "--onnx", "x.onnx", "--opset", "11"], "opset"),
        (["{artifact}", "--tensorrt", "x.engine", "--batch", "8,1,4"], "min <= opt <= max"),
    ],
)
def test_fine_export_errors_are_one_line(artifact, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    args = [a.replace("{artifact}", str(artifact)) for a in args]
    assert fine(["export", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_fine_bench_runtime(artifact, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = fine(["bench", "runtime", str(artifact), "--iters", "3", "--warmup", "1", "--threads", "1",
               "--length", "20", "--contributions"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    rows = [line.split() for line in out.splitlines() if line.startswith(("torch-cpu", "onnxruntime-cpu"))]
    assert {(r[0], r[2], r[3]) for r in rows} >= {
        (backend, call, b)
        for backend in ("torch-cpu", "onnxruntime-cpu")
        for call in ("graph", "shapley")
        for b in ("1", "8")
    }
    for r in rows:
        p50, p95, thr, cpu = float(r[4]), float(r[5]), float(r[6]), float(r[7])
        assert 0 < p50 <= p95 and thr > 0 and cpu > 0
    assert "speed-up onnxruntime-cpu vs torch-cpu" in out


def test_fine_export_text_encoder_outside(bert_model, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    artifact = save_model(bert_model, tmp_path / "bert_artifact")
    out = tmp_path / "fusion.onnx"
    assert (
        fine(["export", str(artifact), "--onnx", str(out), "--text-encoder", "outside", "--no-simplify"]) == 0
    )
    printed = capsys.readouterr().out
    assert (tmp_path / "fusion.text_encoder.onnx").is_file()
    assert "text input: embeddings" in printed and "parity:" in printed
    worst = max(float(x.split()[-1]) for x in printed.split("max |Δ|")[1].strip().split(","))
    assert worst < 1e-4


def test_fine_export_to_an_unwritable_path_is_one_line(artifact, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a path under a regular file cannot be created, root or not
    rc = fine(["export", str(artifact), "--onnx", str(blocker / "sub" / "m.onnx"), "--no-simplify"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(
        f"fine export: {blocker / 'sub'}: cannot write or read there"
    )
