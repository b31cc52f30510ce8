"""``fine diagnose``: a trained tiny model's branches all respond; a branch made constant is flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.cli import main as fine
from core.artifact import save_model
from core.config import LossConfig
from core.errors import FineError
from core.losses import FineLoss
from core.model import FINE
from training.diagnose import DiagnoseConfig, diagnose, require_working_branches, synthetic_probe
from training.input_norm import fit_input_norm
from training.registry import build_config
from training.synthetic import planted_splits
from training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FINE, Path]:
    """FINE (small) trained for 2 epochs on planted data where every modality carries the label."""
    splits = planted_splits(n_train=160, n_valid=32, n_test=32, seed=2, text_signal=0.5)
    cfg = build_config(splits["train"].feature_dims, (-3.0, 3.0), "small")
    torch.manual_seed(0)
    model = FINE(cfg)
    fit_input_norm(model, splits["train"])
    Trainer(model, FineLoss(cfg, LossConfig()), TrainConfig(epochs=2, batch_size=16, seed=1)).fit(
        splits["train"], splits["valid"]
    )
    model.eval()
    return model, save_model(model, tmp_path_factory.mktemp("diag") / "model")


def _collapse(model: FINE, modality: str) -> FINE:
    """The same model with ``modality``'s FTRE output layer zeroed: whatever the input, the branch hands
    the fusion the same tokens (the LayerNorm's bias)."""
    broken = FINE(model.config)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.encoders[modality].ftre.out[0].weight.zero_()
        broken.encoders[modality].ftre.out[0].bias.zero_()
    return broken.eval()


def test_working_model_passes_and_collapsed_branch_is_flagged(trained):
    model, _ = trained
    ok = diagnose(model)
    assert ok.collapsed == []
    assert ok.threshold == pytest.approx(0.06)  # 0.02 x the MOSI half-range 3
    for m, b in ok.branches.items():
        assert b.rows == 128 and b.unimodal_std > 3 * ok.threshold and b.sensitivity > 0.01, (m, b)
    bad = diagnose(_collapse(model, "vision"))
    assert bad.collapsed == ["vision"]
    assert bad.branches["vision"].unimodal_std < 1e-4
    assert bad.branches["audio"].unimodal_std > 3 * ok.threshold  # the other branches still work
    with pytest.raises(FineError, match=r"^the model: collapsed branch: vision \(face\) std 0\.0000"):
        require_working_branches(_collapse(model, "vision"), "the model")


def test_synthetic_probe_follows_the_models_input_scale(trained):
    model, _ = trained
    probe = synthetic_probe(model, DiagnoseConfig(probe_size=64, seed=3))
    assert len(probe) == 64
    x = torch.cat([torch.from_numpy(s.features["audio"]) for s in probe.samples])
    mean, std = model.encoders["audio"].in_mean, model.encoders["audio"].in_std
    assert torch.allclose(x.mean(0), mean, atol=0.35 * float(std.max()))
    assert torch.allclose(x.std(0), std, rtol=0.3)


def test_cli_reports_branches_and_exit_status(trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    model, path = trained
    out = tmp_path / "diag.json"
    argv = ["diagnose", str(path), "--probe", "synthetic:64", "--min-spread", "0.005", "--json", str(out)]
    assert fine(argv) == 0
    printed = capsys.readouterr().out
    assert "probe: synthetic:64 [valid] (n=16)" in printed and printed.count(" ok") == 3, printed
    assert json.loads(out.read_text())["collapsed"] == []
    broken = save_model(_collapse(model, "audio"), tmp_path / "broken")
    assert fine(["diagnose", str(broken)]) == 1
    assert "audio (voice)" in (text := capsys.readouterr().out) and "COLLAPSED" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--probe", "csv:/does/not/exist.csv"], "fine diagnose: /does/not/exist.csv: cannot read"),
        (["--min-spread", "2"], "fine diagnose: min_spread must be in (0, 1), got 2.0"),
    ],
)
def test_bad_input_is_one_line(trained, capsys: pytest.CaptureFixture[str], extra, message):
    _, path = trained
    assert fine(["diagnose", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
