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


def _vision_version() -> str | None:
    cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())
    vision = (cfg.get("model", cfg).get("feature_profile") or {}).get("vision") or {}
    return vision.get("version")


# The shipped default model has not been rebuilt on the expression encoder yet (issue 14, point 4): until
# it is, these acceptance tests cannot pass and say so instead of failing.
pytestmark = pytest.mark.skipif(
    _vision_version() == "1", reason="default model still on vision profile v1 (rebuild pending)"
)


def _fer_test(shared_data: Path) -> Path:
    folder = shared_data / "faces" / "fer2013" / "test"
    if not folder.is_dir():
        pytest.skip("FER-2013 is not in ../shared/data")
    return folder


def _face_only_scores(folder: Path, per_class: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class[c]`` test images of each class in which FaceMesh finds a face (about 1 in 10
    upscaled FER crops has none; the corpus skips those too), each as a still face through the run-time
    path (FaceMesh, aligned crop, encoder), scored face alone. Returns (classes, scores)."""
    pytest.importorskip("mediapipe")
    import cv2

    from app.pipeline.scorer import Scorer, UnitFeatures
    from training.corpus import _fer_faces
    from training.expression_eval import _facemesh

    scorer = Scorer(DEFAULT_MODEL, backend="torch", threads=1)
    mesh = _facemesh()
    classes, feats = [], []
    try:
        for cls, n in per_class.items():
            found = 0
            for p in sorted((folder / cls).glob("*.jpg")):
                if found == n:
                    break
                row = _fer_faces(scorer.extractors, mesh, cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
                if row is not None:
                    classes.append(cls)
                    feats.append(UnitFeatures(text=None, audio=None, vision=row[None]))
                    found += 1
    finally:
        mesh.close()
    pred = scorer.runner.infer(scorer.batch(feats), contributions=False)
    scorer.close()
    return np.array(classes), np.asarray(pred.score, dtype=np.float64)


def test_face_alone_moves_the_score_and_separates_happy_from_negative(shared_data: Path) -> None:
    from training.expression import auc

    folder = _fer_test(shared_data)
    per_class = {"happy": 12, "neutral": 8, "surprise": 6, **dict.fromkeys(NEGATIVE, 6)}  # 50 images
    classes, scores = _face_only_scores(folder, per_class)
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
