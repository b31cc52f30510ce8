"""Face features from video frames: MediaPipe FaceMesh landmarks -> pose- and scale-normalised expression.

Stages (each a method, so the benchmark can time them): :meth:`FaceMeshTracker.landmarks` (detection +
468 landmarks, tracking between frames), :func:`select_primary` (one face, chosen stably),
:func:`expression_features` (20 geometric numbers) and, from profile version 2 on, the FER-2013 expression
encoder (:mod:`core.features.expression`) on a gray crop aligned by the landmarks: 7 class probabilities,
a valence and a 32-d embedding beside the geometry (60 numbers per frame). :class:`VisionFeatureExtractor`
runs them per frame for live use and over a whole file offline, through the same ``process`` method.

Profile versions (``ExtractorConfig.from_profile`` picks the right one from a model's profile, so every
model keeps getting the features it was trained on):

- ``1``: geometry only (20-d), models trained before the expression encoder (``expression=False``);
- ``2``: geometry + encoder (60-d), the default for models trained on video (MOSI-style recordings);
- ``3``: encoder only (40-d, ``geometry=False``), for models whose faces come from FER-2013 (the default
  model). A FER face is a 48-px crop that FaceMesh only finds upscaled 4x, and the geometry measured on it
  does not match the geometry of the same face in a video frame: on 81 real video frames put through both
  paths, the 20 geometric values differ by a median 0.62 of their spread (per-value correlation 0.85),
  the encoder's outputs by 0.07-0.12 (correlation 0.98-0.99). A face branch trained on FER geometry
  learns cues that video does not repeat (a crying grimace's wide mouth read as a smile), so it gets none.

Expression features are measured in a face-centred frame: origin at the nose bridge (landmark 168),
x from the right to the left outer eye corner, y from the subnasale up to the bridge (orthogonalised),
z their cross product; lengths are in units of the outer inter-ocular distance. That removes image scale,
in-plane rotation and most of yaw/pitch; the head pose itself is kept as three angles.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import MissingDependencyError
from core.errors import check as _check
from core.features.expression import ExpressionEncoder, ExpressionOutput, align_face, load_encoder, to_gray
from core.features.profile import ModalityProfile

log = logging.getLogger(__name__)

NAME = "fine-facemesh-expression"
VERSION = "2"  # geometry + FER-2013 expression encoder
GEOMETRY_VERSION = "1"  # geometry only (models trained before the expression encoder)
EXPRESSION_VERSION = "3"  # the expression encoder only (models trained on FER-2013 faces)

FEATURES: tuple[str, ...] = (
    "mouth_width",
    "mouth_open",
    "lip_corner_raise_r",
    "lip_corner_raise_l",
    "upper_lip_to_nose",
    "jaw_drop",
    "eye_open_r",
    "eye_open_l",
    "brow_raise_r",
    "brow_raise_l",
    "inner_brow_raise_r",
    "inner_brow_raise_l",
    "brow_gap",
    "mouth_corner_to_eye_r",
    "mouth_corner_to_eye_l",
    "lip_height",
    "lower_lid_raise",
    "yaw",
    "pitch",
    "roll",
)

# FaceMesh landmark indices ("r"/"l" are the subject's right/left).
EYE_OUT_R, EYE_OUT_L, EYE_IN_R, EYE_IN_L = 33, 263, 133, 362
LID_UP_R, LID_LO_R, LID_UP_L, LID_LO_L = 159, 145, 386, 374
BROW_MID_R, BROW_MID_L, BROW_IN_R, BROW_IN_L = 105, 334, 107, 336
MOUTH_R, MOUTH_L, LIP_IN_UP, LIP_IN_LO, LIP_OUT_UP, LIP_OUT_LO = 61, 291, 13, 14, 0, 17
BRIDGE, SUBNASALE, CHIN = 168, 2, 152


@dataclass(frozen=True)
class VisionFeatureConfig:
    fps: float = 5.0  # frames analysed per second of video
    # Faces FaceMesh tracks. 1: the tracked face stays primary until it is lost (then MediaPipe's best
    # detection); FaceMesh ~7 ms/frame here. >1: the primary face is the one overlapping the previous
    # primary, else the largest, but the detector then runs on every frame until that many faces are
    # found (+~4 ms/frame with 2, measured at 640x360 on one core).
    max_faces: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    min_present: float = 0.0  # a clip's vision is present when more than this fraction of frames has a face
    expression: bool = True  # add the expression encoder's outputs (profile v2); False: geometry only (v1)
    geometry: bool = True  # the 20 geometric values; False with expression: the encoder only (profile v3)

    def __post_init__(self) -> None:
        _check(self.expression or self.geometry, "vision needs the geometry, the expression encoder or both")
        _check(0 < self.fps <= 120, f"vision.fps must be in (0, 120], got {self.fps}")
        _check(1 <= self.max_faces <= 8, f"vision.max_faces must be in [1, 8], got {self.max_faces}")
        _check(0 < self.min_detection_confidence < 1, "vision.min_detection_confidence must be in (0, 1)")
        _check(0 < self.min_tracking_confidence < 1, "vision.min_tracking_confidence must be in (0, 1)")
        _check(0 <= self.min_present < 1, "vision.min_present must be in [0, 1)")


def _mediapipe() -> Any:
    try:
        from mediapipe.python.solutions import face_mesh  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependencyError(
            "face features need MediaPipe with the bundled FaceMesh model (0.10.14 - 0.10.21): "
            "pip install 'fine-msa[features]'"
        ) from None
    return face_mesh


@dataclass
class Face:
    landmarks: np.ndarray  # (468, 3) pixels (x, y, z scaled like x)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceMeshTracker:
    """MediaPipe FaceMesh in tracking mode (detector only when a face is lost). One per video stream."""

    def __init__(self, config: VisionFeatureConfig) -> None:
        face_mesh = _mediapipe()
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=config.max_faces,
            refine_landmarks=False,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence,
        )

    def landmarks(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = []
        for lm in result.multi_face_landmarks or ():
            pts = np.array([(p.x, p.y, p.z) for p in lm.landmark], dtype=np.float64)
            pts *= (w, h, w)
            x0, y0 = pts[:, 0].min(), pts[:, 1].min()
            x1, y1 = pts[:, 0].max(), pts[:, 1].max()
            faces.append(Face(pts, (float(x0), float(y0), float(x1), float(y1))))
        return faces

    def close(self) -> None:
        self._mesh.close()


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_primary(faces: list[Face], previous: tuple[float, float, float, float] | None) -> Face | None:
    """The face that overlaps the previous primary face most (IoU > 0.3), else the largest."""
    if not faces:
        return None
    if previous is not None:
        best = max(faces, key=lambda f: _iou(f.box, previous))
        if _iou(best.box, previous) > 0.3:
            return best
    return max(faces, key=lambda f: f.area)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(v @ v)), 1e-9)


def head_frame(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation ``(3, 3)`` (columns: face x, y, z axes in image coordinates), origin and scale."""
    across = pts[EYE_OUT_L] - pts[EYE_OUT_R]
    scale = max(math.sqrt(float(across @ across)), 1e-9)
    x = across / scale
    up = pts[BRIDGE] - pts[SUBNASALE]
    y = _unit(up - float(up @ x) * x)
    z = np.array([x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]])
    return np.stack([x, y, z], axis=1), pts[BRIDGE], scale


# (a, b) landmark pairs whose face-frame distance is a feature, and (a, b) pairs whose height difference
# (y_a - y_b, y up) is one; in FEATURES order after the pose-free block is assembled below.
_DIST = np.array(
    [
        (MOUTH_R, MOUTH_L),
        (LIP_IN_UP, LIP_IN_LO),
        (LIP_OUT_UP, SUBNASALE),
        (CHIN, SUBNASALE),
        (LID_UP_R, LID_LO_R),
        (LID_UP_L, LID_LO_L),
        (BROW_IN_R, BROW_IN_L),
        (MOUTH_R, EYE_OUT_R),
        (MOUTH_L, EYE_OUT_L),
        (LIP_OUT_UP, LIP_OUT_LO),
    ]
)
_RISE = np.array(
    [(BROW_MID_R, LID_UP_R), (BROW_MID_L, LID_UP_L), (BROW_IN_R, EYE_IN_R), (BROW_IN_L, EYE_IN_L)]
)
_USED = np.unique(np.concatenate([_DIST.ravel(), _RISE.ravel(), [LID_LO_R, EYE_OUT_R, LID_LO_L, EYE_OUT_L]]))


def expression_features(pts: np.ndarray) -> np.ndarray:
    """``(468, 3)`` pixel landmarks -> ``(20,)`` float32 features, in :data:`FEATURES` order."""
    rot, origin, scale = head_frame(pts)
    q = np.zeros_like(pts)
    q[_USED] = (pts[_USED] - origin) @ rot / scale  # face frame: y up, inter-ocular distance = 1
    d = np.linalg.norm(q[_DIST[:, 0]] - q[_DIST[:, 1]], axis=1)
    rise = q[_RISE[:, 0], 1] - q[_RISE[:, 1], 1]
    lip_mid_y = 0.5 * (q[LIP_IN_UP, 1] + q[LIP_IN_LO, 1])
    # Pose: relative to a frontal face, whose axes in image coordinates are (1,0,0), (0,-1,0), (0,0,-1).
    r = rot * np.array([1.0, -1.0, -1.0])
    out = np.empty(len(FEATURES), dtype=np.float32)
    out[0:2] = d[0:2]  # mouth_width, mouth_open
    out[2] = q[MOUTH_R, 1] - lip_mid_y
    out[3] = q[MOUTH_L, 1] - lip_mid_y
    out[4:8] = d[2:6]  # upper_lip_to_nose, jaw_drop, eye_open_r, eye_open_l
    out[8:12] = rise  # brow_raise_r/l, inner_brow_raise_r/l
    out[12:16] = d[6:10]  # brow_gap, mouth_corner_to_eye_r/l, lip_height
    out[16] = 0.5 * (q[LID_LO_R, 1] - q[EYE_OUT_R, 1] + q[LID_LO_L, 1] - q[EYE_OUT_L, 1])
    out[17] = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))  # yaw
    out[18] = np.arctan2(r[2, 1], r[2, 2])  # pitch
    out[19] = np.arctan2(r[1, 0], r[0, 0])  # roll
    return out


@dataclass
class VisionFeatures:
    features: np.ndarray  # (n, dim) float32 (20 in v1, 60 in v2); zeros on frames without a face
    present: np.ndarray  # (n,) bool: a face was found on the frame
    times: np.ndarray  # (n,) seconds

    @property
    def presence_rate(self) -> float:
        return float(self.present.mean()) if self.present.size else 0.0

    def present_features(self) -> np.ndarray:
        return self.features[self.present]


@dataclass
class VisionFeatureExtractor:
    """Per-frame face features with a stable primary face. ``process`` is the live entry point (feed it
    the camera frames that ``core.features.decode.FrameSampler(config.fps)`` keeps, as ``extract_file``
    does for a file). Not thread-safe: one per stream. ``encoder``: the expression encoder to use (default:
    the shipped one, loaded on first use; the export package's runners plug in as its backend)."""

    config: VisionFeatureConfig = field(default_factory=VisionFeatureConfig)
    encoder: ExpressionEncoder | None = None
    _tracker: FaceMeshTracker | None = None
    _previous: tuple[float, float, float, float] | None = None

    @property
    def expression_encoder(self) -> ExpressionEncoder | None:
        if self.config.expression and self.encoder is None:
            self.encoder = load_encoder()
        return self.encoder if self.config.expression else None

    @property
    def dim(self) -> int:
        enc = self.expression_encoder
        return (len(FEATURES) if self.config.geometry else 0) + (
            0 if enc is None else 8 + enc.config.embed_dim
        )

    @property
    def profile(self) -> ModalityProfile:
        options: dict[str, Any] = {"max_faces": self.config.max_faces}
        enc = self.expression_encoder
        if enc is not None:
            options["expression"] = enc.identity
        if enc is None:
            version = GEOMETRY_VERSION
        else:
            version = VERSION if self.config.geometry else EXPRESSION_VERSION
        return ModalityProfile(
            name=NAME,
            version=version,
            dim=self.dim,
            frame_rate=self.config.fps,
            options=options,
        )

    @property
    def tracker(self) -> FaceMeshTracker:
        if self._tracker is None:
            self._tracker = FaceMeshTracker(self.config)
        return self._tracker

    def reset(self) -> None:
        """Forget the tracked face (start of a new video)."""
        if self._tracker is not None:
            self._tracker.close()
        self._tracker, self._previous = None, None

    def track(self, rgb: np.ndarray) -> Face | None:
        """One RGB frame ``(h, w, 3)`` uint8 -> the primary face (landmarks + box), or ``None``.
        The live app draws these landmarks; :meth:`face_features` turns them into features."""
        face = select_primary(self.tracker.landmarks(rgb), self._previous)
        self._previous = None if face is None else face.box
        return face

    def face_features(self, rgb: np.ndarray, face: Face) -> tuple[np.ndarray, ExpressionOutput | None]:
        """Features of a tracked face in its frame, and the expression encoder's output (``None`` in v1)."""
        enc = self.expression_encoder
        parts = [expression_features(face.landmarks)] if self.config.geometry else []
        expr = None if enc is None else enc(align_face(to_gray(rgb), face.landmarks, enc.config.size))
        if expr is not None:
            parts.append(expr.features()[0])
        return np.concatenate(parts).astype(np.float32), expr

    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        """One RGB frame ``(h, w, 3)`` uint8 -> features of the primary face, or ``None``."""
        face = self.track(rgb)
        return None if face is None else self.face_features(rgb, face)[0]

    def extract_frames(self, frames: list[np.ndarray], times: list[float] | None = None) -> VisionFeatures:
        feats = np.zeros((len(frames), self.dim), dtype=np.float32)
        present = np.zeros(len(frames), dtype=bool)
        for i, rgb in enumerate(frames):
            f = self.process(rgb)
            if f is not None:
                feats[i], present[i] = f, True
        t = np.asarray(
            times if times is not None else np.arange(len(frames)) / self.config.fps, dtype=np.float64
        )
        return VisionFeatures(feats, present, t)

    def extract_file(self, path: str | os.PathLike[str]) -> VisionFeatures:
        """All frames of ``path`` at ``config.fps`` (empty when the file has no video track)."""
        from core.features.decode import iter_video_frames

        self.reset()
        rows, present, times = [], [], []
        try:
            for frame in iter_video_frames(path, fps=self.config.fps):
                f = self.process(frame.rgb)
                rows.append(f if f is not None else np.zeros(self.dim, dtype=np.float32))
                present.append(f is not None)
                times.append(frame.time)
        finally:
            self.reset()
        feats = np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        return VisionFeatures(feats, np.asarray(present, dtype=bool), np.asarray(times, dtype=np.float64))

    def is_present(self, result: VisionFeatures) -> bool:
        return bool(result.present.any()) and result.presence_rate > self.config.min_present
