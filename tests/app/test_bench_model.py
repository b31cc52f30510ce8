"""``fine bench model`` prints torch and onnxruntime rows for the same model (numbers, not timings, are
asserted: latency targets are checked by running the benchmark, never by a timed test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.artifact import ModelCard, save_model
from core.config import FineConfig, FTREConfig, FusionConfig, MoQConfig
from core.model import FINE


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = FineConfig(
        input_dims={"text": 12, "audio": 5, "vision": 7},
        d_model=32,
        moq=MoQConfig(num_experts=2, num_queries=4, num_blocks=2, num_heads=2, dropout=0.0),
        ftre=FTREConfig(feat_dim=8, hidden=16),
        fusion=FusionConfig(num_layers=1, num_heads=2, dropout=0.0, head_hidden=16),
    )
    torch.manual_seed(0)
    return save_model(FINE(cfg).eval(), tmp_path_factory.mktemp("bench") / "m", ModelCard(name="bench"))


def test_bench_model_rows_for_both_backends(small_model: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from app.bench.model import main

    argv = [
        "--model",
        str(small_model),
        "--batch",
        "1",
        "8",
        "--reps",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
    ]
    assert main([*argv, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["backend"], r["batch"]) for r in rows] == [
        ("torch", 1),
        ("torch", 8),
        ("onnxruntime", 1),
        ("onnxruntime", 8),
    ]
    cfg = FineConfig.from_dict(json.loads((small_model / "config.json").read_text())["model"])
    assert {r["params_total"] for r in rows} == {sum(p.numel() for p in FINE(cfg).parameters())}
    assert all(0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "target batch 8 <= 15 ms (torch): p50" in out and "target batch 8 <= 15 ms (onnxruntime): p50" in out
    )


def test_bench_model_bad_backend_is_one_line(capsys) -> None:
    from app.bench.model import main

    assert main(["--backends", "tensorflow"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backends" in err[0]
