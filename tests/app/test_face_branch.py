"""The shipped default model's face branch sees expressions (issue 14): real FER-2013 faces and real clips.

Each of these failed on the model shipped before the expression encoder (its face-only prediction was the
constant +0.0820 for every face, and its face contribution about 0.0003).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.cli import main as score_main

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "app" / "assets" / "default_model"
NEGATIVE = ("angry", "disgust", "fear", "sad")


def _fer_test(shared_data: Path) -> Path:
    folder = shared_data / "faces" / "fer2013" / "test"
    if not folder.is_dir():
        pytest.skip("FER-2013 is not in ../shared/data")
    return folder


def _images(folder: Path, per_class: dict[str, int]) -> list[tuple[str, np.ndarray]]:
    import cv2

    out = []
    for cls, n in per_class.items():
        for p in sorted((folder / cls).glob("*.jpg"))[:n]:
            out.append((cls, cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)))
    return out


def _face_only_scores(images: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Each image as a still face (the run-time path: FaceMesh, aligned crop, encoder), face alone."""
    pytest.importorskip("mediapipe")
    from app.pipeline.scorer import Scorer, UnitFeatures
    from training.corpus import _fer_faces
    from training.expression_eval import _facemesh

    scorer = Scorer(DEFAULT_MODEL, backend="torch", threads=1)
    mesh = _facemesh()
    feats = []
    try:
        for _, img in images:
            row = _fer_faces(scorer.extractors, mesh, img)
            assert row is not None, "FaceMesh found no face in an upscaled FER image"
            feats.append(UnitFeatures(text=None, audio=None, vision=row[None]))
    finally:
        mesh.close()
    pred = scorer.runner.infer(scorer.batch(feats), contributions=False)
    scorer.close()
    return np.asarray(pred.score, dtype=np.float64)


def test_face_alone_moves_the_score_and_separates_happy_from_negative(shared_data: Path) -> None:
    from training.expression import auc

    folder = _fer_test(shared_data)
    per_class = {"happy": 12, "neutral": 8, "surprise": 6, **dict.fromkeys(NEGATIVE, 6)}  # 50 images
    imgs = _images(folder, per_class)
    scores = _face_only_scores(imgs)
    classes = np.array([c for c, _ in imgs])
    assert len(scores) == 50 and scores.std() > 0.2, (
        f"face-only predictions hardly move: std {scores.std():.3f}"
    )
    keep = (classes == "happy") | np.isin(classes, NEGATIVE)
    a = auc(scores[keep], classes[keep] == "happy")
    assert a >= 0.85, f"happy vs angry/disgust/fear/sad AUC {a:.3f} through the full model, face alone"
    assert scores[classes == "happy"].mean() > 0.3 > scores[np.isin(classes, NEGATIVE)].mean()


def _score(clip: Path, out: Path, *extra: str) -> list[dict[str, object]]:
    rc = score_main([str(clip), "--out", str(out), "--no-progress", "--threads", "2", *extra])
    assert rc == 0
    (timeline,) = out.glob("*/timeline.json")
    data = json.loads(timeline.read_text())
    return data["rows"] if isinstance(data, dict) else data


def _mean(rows: list[dict[str, object]], key: str, i: int) -> float:
    return float(np.mean([r[key][i] for r in rows]))  # type: ignore[index]


@pytest.mark.slow
def test_face_contribution_follows_the_face_not_the_words(samples_dir: Path, tmp_path: Path) -> None:
    """Smiling + positive speech: face > +0.05; crying + negative: < -0.05; a crying face saying something
    positive (the samples re-muxed): face negative while the words are positive."""
    smiling = _score(samples_dir / "face_smiling_plus_tts_positive.mp4", tmp_path / "smile")
    crying = _score(samples_dir / "face_crying_plus_tts_negative.mp4", tmp_path / "cry")
    mixed = tmp_path / "crying_face_positive_words.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", "-1",
         "-i", str(samples_dir / "face_crying_plus_tts_negative.mp4"),
         "-i", str(samples_dir / "tts_positive_en.wav"), "-map", "0:v", "-map", "1:a", "-shortest",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(mixed)],
        check=True,
    )  # fmt: skip
    opposite = _score(mixed, tmp_path / "opposite")
    face, words = 2, 0  # contribution order: text, audio, vision
    assert _mean(smiling, "contributions", face) > 0.05
    assert _mean(crying, "contributions", face) < -0.05
    assert _mean(opposite, "contributions", face) < 0.0 < _mean(opposite, "contributions", words)
