"""``fine evaluate --missing``: the frame-missing and whole-modality protocols, AUC, outputs, CV pooling."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as fine
from core.losses import FineLoss
from core.model import FINE
from training.missing import (
    CONDITIONS,
    Corruption,
    _frame_drops,
    area_under_curve,
    condition_name,
    predict_corrupted,
)
from training.registry import build_config
from training.synthetic import planted_splits
from training.trainer import TrainConfig, Trainer, predict

QUICK = ["--preset", "small", "--epochs", "1", "--batch-size", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def trained() -> tuple[FINE, dict]:
    splits = planted_splits(n_train=96, n_valid=16, n_test=40, seed=2)
    cfg = build_config(splits["train"].feature_dims, (-3.0, 3.0), "small")
    torch.manual_seed(0)
    model = FINE(cfg)
    Trainer(model, FineLoss(cfg), TrainConfig(epochs=2, batch_size=16, seed=1)).fit(splits["train"])
    return model.eval(), splits


def test_area_under_curve_is_the_curve_average() -> None:
    rates = [0.0, 0.1, 0.2, 0.3]
    assert area_under_curve(rates, [0.8] * 4) == pytest.approx(0.8)
    assert area_under_curve(rates, [1.0, 0.9, 0.8, 0.7]) == pytest.approx(0.85)
    # trapezoid, not the plain mean: (1 + 0.5)/2·0.1 + (0.5 + 0.5)/2·0.2 over 0.3
    assert area_under_curve([0.0, 0.1, 0.3], [1.0, 0.5, 0.5]) == pytest.approx((0.075 + 0.1) / 0.3)


def test_frame_drops_are_per_sample_and_at_the_rate() -> None:
    idx = np.arange(400)
    lengths = {m: [30] * 400 for m in ("text", "audio", "vision")}
    t = dict.fromkeys(("text", "audio", "vision"), 32)
    d = _frame_drops(lengths, t, idx, Corruption(rate=0.3, seed=1111))
    assert not d["audio"][:, 30:].any()  # never beyond the length
    assert d["audio"].float().sum().item() / (400 * 30) == pytest.approx(0.3, abs=0.01)
    # the same sample gets the same draw in another batch (batching does not change the protocol)
    sub = _frame_drops({m: v[5:9] for m, v in lengths.items()}, t, idx[5:9], Corruption(rate=0.3, seed=1111))
    assert torch.equal(sub["vision"], d["vision"][5:9])
    other = _frame_drops(lengths, t, idx, Corruption(rate=0.3, seed=1112))
    assert not torch.equal(other["audio"], d["audio"])


def test_corruptions_on_a_model(trained) -> None:  # type: ignore[no-untyped-def]
    model, splits = trained
    test = splits["test"]
    clean = predict_corrupted(model, test, Corruption())
    np.testing.assert_allclose(clean, predict(model, test)[0], atol=1e-6)
    half = predict_corrupted(model, test, Corruption(rate=0.5, seed=1111))
    assert np.abs(half - clean).mean() > 1e-3
    np.testing.assert_array_equal(half, predict_corrupted(model, test, Corruption(rate=0.5, seed=1111)))
    masked = predict_corrupted(model, test, Corruption(rate=0.5, seed=1111, fill="mask"))
    assert np.abs(masked - half).mean() > 1e-4
    # a modality outside `keep` is absent: the same as removing it from the data
    no_vision = predict_corrupted(model, test, Corruption(keep=("text", "audio")))
    for s in test.samples:
        s.features["vision"] = None
    np.testing.assert_allclose(no_vision, predict(model, test)[0], atol=1e-6)
    assert [condition_name(k) for k in CONDITIONS] == [
        "{T}",
        "{A}",
        "{V}",
        "{T,A}",
        "{T,V}",
        "{A,V}",
        "{T,A,V}",
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_missing_outputs_and_cv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert fine(["train", "--data", "synthetic:48", "--out", str(run), *QUICK]) == 0
    capsys.readouterr()
    assert fine(["evaluate", "--missing", "--model", str(run / "model"), "--data", "synthetic:48"]) == 0
    printed = capsys.readouterr().out
    assert "random frame missing (mean ± std over seeds 1111, 1112, 1113)" in printed
    assert "AUC" in printed and "{T,V}" in printed
    out = run / "missing"
    rate = _rows(out / "missing_rate.csv")
    assert [float(r["rate"]) for r in rate] == pytest.approx([0.1 * k for k in range(10)])
    assert float(rate[0]["MAE_std"]) == 0.0 and float(rate[5]["MAE_std"]) > 0.0
    modality = _rows(out / "missing_modality.csv")
    assert [r["condition"] for r in modality] == ["{T}", "{A}", "{V}", "{T,A}", "{T,V}", "{A,V}", "{T,A,V}"]
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert float(modality[-1]["MAE"]) == pytest.approx(metrics["MAE"], rel=1e-5)  # complete input
    assert float(rate[0]["MAE"]) == pytest.approx(metrics["MAE"], rel=1e-5)
    assert (out / "missing_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["auc"]) >= {"Non0_acc_2", "MAE"} and summary["n"] == 16
    # a CV run: every fold's model on its own test fold, pooled (all 48 + 16 + 16 samples)
    cv = tmp_path / "cv"
    assert fine(["train", "--data", "synthetic:48", "--out", str(cv), "--cv", "3", *QUICK]) == 0
    target = tmp_path / "cv-missing"
    argv = ["evaluate", "--missing", "--model", str(cv), "--data", "synthetic:48", "--cv", "3"]
    assert fine([*argv, "--missing-out", str(target)]) == 0
    assert json.loads((target / "summary.json").read_text())["n"] == 80
    capsys.readouterr()
    assert fine([*argv[:-1], "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fine evaluate: --model") and "fold-3" in err and "\n" not in err


def _summary(level: float) -> dict:
    rates = [
        {
            "rate": 0.1 * k,
            "Non0_acc_2": level - 0.01 * k,
            "Non0_acc_2_std": 0.0,
            "MAE": 0.5 + 0.1 * k,
            "MAE_std": 0.0,
            "Non0_F1": level,
            "Non0_F1_std": 0.0,
            "Corr": 0.5,
            "Corr_std": 0.0,
        }
        for k in range(10)
    ]
    conds = [
        {"condition": condition_name(k), "Non0_acc_2": level, "Non0_F1": level, "MAE": 0.5, "Corr": 0.5}
        for k in CONDITIONS
    ]
    auc = {
        k: area_under_curve([r["rate"] for r in rates], [r[k] for r in rates])
        for k in ("Non0_acc_2", "Non0_F1", "MAE", "Corr")
    }
    return {"rate": rates, "modality": conds, "auc": auc, "label_range": [-3.0, 3.0]}


def test_missing_report_averages_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.missing_report import main as report

    for name, level in (("a", 0.8), ("b", 0.9), ("c", 0.7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(_summary(level)))
    out = tmp_path / "cmp"
    assert (
        report(["--out", str(out), f"plain={tmp_path / 'a'}", f"robust={tmp_path / 'b'},{tmp_path / 'c'}"])
        == 0
    )
    md = (out / "compare.md").read_text()
    # AUC of a line from L down to L - 0.09 is L - 0.045; robust is the mean of b (85.5) and c (65.5)
    assert "| robust | 2 | 75.5 (85.5, 65.5) |" in md
    assert "| plain | 1 | 75.5 |" in md and "{T,A,V}" in md
    # retention = AUC / complete: 0.755 / 0.8 (plain) and 0.755 / mean(0.9, 0.7); MAE 0.5 -> AUC 0.95
    assert "| plain | 0.944 | 1.000 | 1.000 | +0.450 |" in md
    assert "| robust | 0.944 | 1.000 | 1.000 | +0.450 |" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert report(["--out", str(out), f"x={tmp_path / 'nope'}"]) == 2
    assert "summary.json: cannot read" in capsys.readouterr().err
