"""``fine evaluate`` gives a model its data in the form the model takes: raw text through the model's own
text encoder (never silently absent), wrong forms and missing modalities as one-line errors, and an
input-blind baseline beside the metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as fine
from core.artifact import save_model
from core.model import FINE
from training.data import Sample, collate
from training.evalinput import constant_baseline
from training.evaluation import load_eval_data
from training.registry import build_config
from training.trainer import predict

TEXT_PROFILE = {
    "text": {
        "name": "token-embeddings",
        "version": "1",
        "dim": 384,
        "frame_rate": None,
        "sample_rate": None,
        "options": {"source": "packaged:minilm", "max_length": 128},
    }
}
ROWS = [
    ("v1", "1", "I loved this movie, it was wonderful", 2.4, "train"),
    ("v1", "2", "terrible acting and a boring story", -2.2, "train"),
    ("v2", "1", "it was okay I guess", 0.2, "train"),
    ("v3", "1", "the best film I have seen this year", 2.8, "test"),
    ("v3", "2", "I hated every minute of it", -2.6, "test"),
    ("v4", "1", "the music was fine but the plot dragged", -0.4, "test"),
    ("v4", "2", "what a great surprise", 1.8, "test"),
]


def _label_csv(path: Path) -> Path:
    lines = ["video_id,clip_id,text,label,mode"] + [f'{v},{c},"{t}",{y},{m}' for v, c, t, y, m in ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _model(tmp_path: Path, profile: dict | None, text_dim: int = 384) -> tuple[FINE, Path]:
    dims = {"text": text_dim, "audio": 8, "vision": 12}
    over = {"feature_profile": profile} if profile is not None else {}
    torch.manual_seed(3)
    model = FINE(build_config(dims, (-3.0, 3.0), "small", over)).eval()
    return model, save_model(model, tmp_path / "model")


def _args(model: Path, data: str, modalities: tuple[str, ...] | None = None) -> argparse.Namespace:
    return argparse.Namespace(model=model, data=data, modalities=modalities, batch_size=4, split="test")


def test_raw_text_goes_through_the_models_own_encoder(tmp_path: Path):
    from core.features.text import TextFeatureConfig, TextFeatureExtractor

    model, path = _model(tmp_path, TEXT_PROFILE)
    csv = _label_csv(tmp_path / "label.csv")
    splits, train_labels, used = load_eval_data(_args(path, f"csv:{csv}"), model, ["test"])
    assert used == ("text",)
    np.testing.assert_allclose(train_labels, [2.4, -2.2, 0.2])
    test = splits["test"]
    pred, _ = predict(model, test, batch_size=4)
    # the words-only path of `fine score`: each transcript alone through the profile's extractor
    ex = TextFeatureExtractor(TextFeatureConfig("packaged:minilm", 128))
    one_by_one = []
    for s in test.samples:
        emb = ex.encode(s.text).embeddings
        one = Sample(s.id, {"text": emb, "audio": None, "vision": None}, s.label)
        with torch.no_grad():
            one_by_one.append(float(model(collate([one], test.feature_dims)).score[0]))
    np.testing.assert_allclose(pred, one_by_one, atol=1e-4)
    # text is really there: every score differs from the text-absent (all modalities absent) one
    blind = Sample("blind", {"text": None, "audio": None, "vision": None}, 0.0)
    with torch.no_grad():
        absent = float(model(collate([blind], test.feature_dims)).score[0])
    assert np.min(np.abs(pred - absent)) > 1e-3, (pred, absent)
    assert np.std(pred) > 1e-3


def test_cli_prints_modalities_and_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _, path = _model(tmp_path, TEXT_PROFILE)
    csv = _label_csv(tmp_path / "label.csv")
    out = tmp_path / "res.json"
    assert fine(["evaluate", "--model", str(path), "--data", f"csv:{csv}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test (n=4, modalities text (audio,vision absent))" in printed
    assert "input-blind baseline (constant +0.133" in printed
    res = json.loads(out.read_text())["test"]
    assert res["modalities"] == ["text"] and res["baseline"]["Corr"] == 0.0
    # train mean 0.133 and train majority sign + (2 of 3): test labels 2.8, -2.6, -0.4, 1.8
    assert res["baseline"]["MAE"] == pytest.approx(
        np.mean(np.abs(np.array([2.8, -2.6, -0.4, 1.8]) - 0.4 / 3))
    )
    assert res["baseline"]["Non0_acc_2"] == pytest.approx(0.5)


def test_constant_baseline_uses_train_mean_and_majority_sign():
    y = np.array([-1.0, -2.0, 0.0, 1.5])
    b = constant_baseline(np.array([-1.0, -0.5, 2.0, -0.2]), (-3.0, 3.0), y)
    assert b["constant"] == pytest.approx(0.075)
    assert b["majority_sign_non0"] == -1
    assert b["Non0_acc_2"] == pytest.approx(2 / 3)  # predicts negative: right on -1 and -2, wrong on 1.5
    assert b["MAE"] == pytest.approx(np.mean(np.abs(y - 0.075)))


@pytest.mark.parametrize(
    ("profile", "text_dim", "data", "extra", "message"),
    [
        # raw text, but the artifact records no encoder: never "text absent"
        (None, 384, "csv", [], "gives raw text, but the model takes 384-d text features and its artifact"),
        # 16-d synthetic text features for a model that takes 384-d MiniLM embeddings
        (
            TEXT_PROFILE,
            384,
            "synthetic:32",
            [],
            "sample test-0 has text as float32 features (15, 16), but the model takes float features (t, 384)",
        ),
        (TEXT_PROFILE, 384, "csv", ["--modalities", "text,audio"], "has no audio (it carries text)"),
    ],
)
def test_wrong_or_missing_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile, text_dim, data, extra, message
):
    _, path = _model(tmp_path, profile, text_dim)
    if data == "csv":
        data = f"csv:{_label_csv(tmp_path / 'label.csv')}"
    assert fine(["evaluate", "--model", str(path), "--data", data, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err, err


@pytest.mark.slow
def test_default_model_on_mosi_test_scores_its_words(shared_data: Path, tmp_path: Path):
    """The shipped model on MOSI's raw transcripts: its real numbers, far above the input-blind baseline
    (before the fix every row was scored with text absent: Non0 Acc-2 42.2, the baseline's number)."""
    label = shared_data / "MOSI" / "label.csv"
    model = Path(__file__).resolve().parents[2] / "app" / "assets" / "default_model"
    out = tmp_path / "res.json"
    argv = ["evaluate", "--model", str(model), "--data", f"csv:{label}", "--threads", "1"]
    assert fine([*argv, "--out", str(out)]) == 0
    got = json.loads(out.read_text())["test"]
    assert got["n"] == 686 and got["modalities"] == ["text"]
    assert got["Non0_acc_2"] > 0.7 and got["Corr"] > 0.5, got
    assert got["Non0_acc_2"] > got["baseline"]["Non0_acc_2"] + 0.2, got
    assert got["baseline"]["Corr"] == 0.0
