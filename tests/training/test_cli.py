"""``fine train`` / ``fine evaluate`` end to end: run directories, seeds, CV, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main as fine

QUICK = ["--preset", "small", "--epochs", "2", "--batch-size", "16", "--threads", "1"]


def test_train_seeds_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    assert fine(["train", "--data", "synthetic:64", "--out", str(out), "--seeds", "1111,1112", *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "test (2 runs): Has0_acc_2=" in printed and "±" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and set(summary["test"]["MAE"]) == {"mean", "std"}
    run = out / "seed-1112"
    for name in ("config.json", "log.csv", "metrics.json", "best", "checkpoint", "model/config.json"):
        assert (run / name).exists(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["seed"] == 1112 and cfg["model"]["d_model"] == 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"Non0_acc_2", "Non0_F1", "Acc_7", "MAE", "Corr"}
    # evaluating the artifact on the same split reproduces the numbers of the run
    res = tmp_path / "eval.json"
    assert fine(["evaluate", "--model", str(run / "model"), "--data", "synthetic:64", "--out", str(res)]) == 0
    got = json.loads(res.read_text())["test"]
    assert got["MAE"] == pytest.approx(metrics["test"]["MAE"], rel=1e-5)


def test_cv_mmim_grouped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cv"
    assert (
        fine(["train", "--data", "synthetic:48", "--out", str(out), "--model", "mmim", "--cv", "3", *QUICK])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 3
    assert json.loads((out / "fold-2" / "model" / "config.json").read_text())["architecture"] == "mmim"
    assert "fold 2 seed 1111: test" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--data", "nope:1", "--out", "X"],
            "fine train: --data 'nope:1': unknown data scheme 'nope'",
        ),
        (
            ["train", "--data", "csv:/does/not/exist.csv", "--out", "X"],
            "fine train: /does/not/exist.csv: cannot read",
        ),
        (["train", "--data", "synthetic:32", "--out", "X", "--text-encoder", "packaged:minilm"], "has none"),
        (
            ["evaluate", "--model", "/nowhere", "--data", "synthetic:32"],
            "fine evaluate: /nowhere: no config.json",
        ),
    ],
)
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, message):
    argv = [a.replace("X", str(tmp_path / "x")) for a in argv]
    assert fine(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_train_out_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = fine(["train", "--data", "synthetic:32", "--out", str(blocker / "run"), *QUICK])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(
        f"fine train: {blocker / 'run'}: cannot write or read there"
    )


def test_metrics_json_is_strict_json_without_a_valid_split(tmp_path: Path):
    """No validation split: no best validation loss. metrics.json says null, not Infinity (not JSON)."""
    labels = tmp_path / "label.csv"
    rows = [
        f"v{i},{i},{'good' if i % 2 else 'bad'} movie,{1.5 if i % 2 else -1.5},{'test' if i >= 24 else 'train'}"
        for i in range(32)
    ]
    labels.write_text("video_id,clip_id,text,label,mode\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert fine(["train", "--data", f"csv:{labels}", "--out", str(out), "--modalities", "text", *QUICK]) == 0
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json contains {c}"))
    assert metrics["best_valid_loss"] is None and "valid" not in metrics and "MAE" in metrics["test"]
    card = json.loads((out / "model" / "config.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert card is not None
