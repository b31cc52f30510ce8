"""Acceptance 7: save -> load gives identical outputs; pickles are refused; queue state survives."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from core.artifact import ArtifactError, load_model, read_config, save_model
from core.config import LossConfig
from core.losses import FineLoss
from core.model import FINE
from tests.core.helpers import random_batch, small_config


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = FINE(small_config()).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    batch = random_batch(seed=5)
    batch.presence[1, 2] = False
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    assert torch.equal(a.score, b.score) and torch.equal(a.unimodal, b.unimodal)
    meta = read_config(tmp_path / "m")
    assert meta["model"]["input_dims"] == small_config().input_dims
    assert meta["model"]["label_range"] == [-3.0, 3.0]


def test_pickle_payload_is_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_model(FINE(small_config()), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"w": _Evil()}))
    with pytest.raises(ArtifactError, match="pickle"):
        load_model(tmp_path / "m")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_or_mismatched_weights_give_one_line_errors(tmp_path):
    save_model(FINE(small_config()), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="not a valid safetensors"):
        load_model(tmp_path / "m")
    save_model(FINE(small_config(d_model=64)), tmp_path / "other")
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "other" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ArtifactError):
        load_model(tmp_path / "m")
    with pytest.raises(ArtifactError, match=r"no config\.json"):
        load_model(tmp_path / "nothing")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model"]["d_modell"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="d_modell"):
        load_model(tmp_path / "m")


def test_queue_and_critic_state_survive_save_and_load(tmp_path):
    cfg = small_config()
    loss = FineLoss(cfg, LossConfig(critic_hidden=16, queue_size=8))
    model = FINE(cfg)
    batch = random_batch(b=12, seed=6)
    loss.update_queue(model(batch), batch.labels)
    loss.save(tmp_path / "loss.safetensors")
    fresh = FineLoss(cfg, LossConfig(critic_hidden=16, queue_size=8))
    assert fresh.queue is not None and int(fresh.queue.count.sum()) == 0
    fresh.load(tmp_path / "loss.safetensors")
    assert int(fresh.queue.count.sum()) == 12
    for (ka, va), (kb, vb) in zip(loss.state_dict().items(), fresh.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_artifacts_are_ordinary_readable_files(tmp_path):
    save_model(FINE(small_config()), tmp_path / "m")
    assert (tmp_path / "m" / "config.json").stat().st_mode & 0o044 == 0o044


def test_safetensors_whose_header_size_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path) -> None:
    """A safetensors header of 128 + 256·k bytes makes the file's first byte 0x80, like a pickle's."""
    import struct

    from core.artifact import load_tensors, save_tensors

    path = tmp_path / "w.safetensors"
    for pad in range(300):
        save_tensors(path, {"w": torch.arange(6.0)}, {"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80 and struct.unpack("<Q", path.read_bytes()[:8])[0] % 256 == 128
    assert torch.equal(load_tensors(path)["w"], torch.arange(6.0))
