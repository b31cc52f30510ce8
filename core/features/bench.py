"""``fine bench features``: extraction speed per stage on one core (numbers printed, never a timed test).

Audio: decoded samples -> features (decoding excluded), as a multiple of real time, offline and streamed
in 20 ms chunks. Vision: frames decoded and resized to 640x360 beforehand; per frame the cost of
FaceMesh (detection + landmarks), primary-face selection and expression features, and the total in fps.
Without ``--video``/``--audio`` a generated signal is used for audio and the vision part is skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import FineError

log = logging.getLogger(__name__)


@contextmanager
def _cores(n: int) -> Iterator[str]:
    """Run on ``n`` CPU cores (affinity + torch/OpenCV threads); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    cv2: Any = None
    with suppress(ImportError):
        import cv2
    cv2_threads = cv2.getNumThreads() if cv2 is not None else 0
    if cv2 is not None:
        cv2.setNumThreads(n)
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        if allowed is not None:
            os.sched_setaffinity(0, set(allowed[:n]))
            yield f"pinned to CPU {allowed[:n]}"
        else:
            yield "not pinned (no sched_setaffinity)"
    finally:
        if allowed is not None:
            os.sched_setaffinity(0, set(allowed))
        torch.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(cv2_threads)


def _synthetic_speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """Harmonic tone with a wandering pitch and syllable-like bursts, plus noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(float)
    return (0.1 * voice * envelope + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def bench_audio(signal: np.ndarray, repeats: int = 5) -> dict[str, float]:
    from core.features.audio import AudioFeatureExtractor

    ex = AudioFeatureExtractor()
    sr = ex.config.sample_rate
    seconds = signal.size / sr
    ex.extract(signal[: sr * 2])  # warm-up
    offline = min(_timed(lambda: ex.extract(signal)) for _ in range(repeats))
    chunk = int(0.02 * sr)

    def streamed() -> None:
        s = ex.stream()
        for i in range(0, signal.size, chunk):
            s.push(signal[i : i + chunk])

    stream = min(_timed(streamed) for _ in range(max(1, repeats // 2)))
    return {
        "seconds": seconds,
        "offline_x_realtime": seconds / offline,
        "offline_ms_per_second_of_audio": 1e3 * offline / seconds,
        "stream_20ms_chunks_x_realtime": seconds / stream,
    }


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_vision(
    video: Path, frames: int = 150, width: int = 640, height: int = 360, max_faces: int = 1
) -> dict[str, Any]:
    import cv2

    from core.features.decode import iter_video_frames
    from core.features.vision import (
        VisionFeatureConfig,
        VisionFeatureExtractor,
        expression_features,
        select_primary,
    )

    images = [
        cv2.resize(f.rgb, (width, height)) for f in iter_video_frames(video, fps=None, max_frames=frames)
    ]
    if not images:
        raise FineError(f"{video}: no video frames to benchmark")
    ex = VisionFeatureExtractor(VisionFeatureConfig(max_faces=max_faces))
    tracker = ex.tracker
    for img in images[:5]:  # warm-up (graph start, first detection)
        tracker.landmarks(img)
    t_mesh = t_sel = t_feat = 0.0
    found = 0
    previous = None
    for img in images:
        t0 = time.perf_counter()
        faces = tracker.landmarks(img)
        t1 = time.perf_counter()
        face = select_primary(faces, previous)
        t2 = time.perf_counter()
        if face is not None:
            expression_features(face.landmarks)
            previous = face.box
            found += 1
        t3 = time.perf_counter()
        t_mesh, t_sel, t_feat = t_mesh + t1 - t0, t_sel + t2 - t1, t_feat + t3 - t2
    ex.reset()
    n = len(images)
    total = t_mesh + t_sel + t_feat
    return {
        "frames": n,
        "size": f"{width}x{height}",
        "max_faces": max_faces,
        "faces_found": found,
        "facemesh_ms": 1e3 * t_mesh / n,
        "select_ms": 1e3 * t_sel / n,
        "expression_ms": 1e3 * t_feat / n,
        "total_ms": 1e3 * total / n,
        "fps": n / total,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fine bench features", description=__doc__.splitlines()[0])
    p.add_argument(
        "--audio", type=Path, help="audio or video file to time audio features on (default: generated)"
    )
    p.add_argument("--seconds", type=float, default=60.0, help="length of the generated audio")
    p.add_argument("--video", type=Path, help="video with a face to time vision features on")
    p.add_argument("--frames", type=int, default=150, help="video frames to time")
    p.add_argument("--max-faces", type=int, default=1, help="faces FaceMesh tracks (default 1, as extracted)")
    p.add_argument("--cores", type=int, default=1, help="CPU cores to use (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return int(exc.code or 0)
    try:
        with _cores(args.cores) as pinned:
            audio, vision, source = _run(args)
    except FineError as exc:
        print(f"fine bench features: {exc}", file=sys.stderr)
        return 2
    _report(args, pinned, source, audio, vision)
    return 0


def _run(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, Any] | None, str]:
    if args.audio is not None:
        from core.features.decode import load_audio

        signal, source = load_audio(args.audio), str(args.audio)
    else:
        signal, source = _synthetic_speech(args.seconds), f"generated {args.seconds:g} s"
    audio = bench_audio(signal)
    vision = (
        bench_vision(args.video, args.frames, max_faces=args.max_faces) if args.video is not None else None
    )
    return audio, vision, source


def _report(
    args: argparse.Namespace, pinned: str, source: str, audio: dict[str, float], vision: dict[str, Any] | None
) -> None:
    if args.json:
        print(json.dumps({"cores": args.cores, "audio": audio, "vision": vision}))
        return
    print(f"cores: {args.cores} ({pinned})")
    print(
        f"audio ({source}, {audio['seconds']:.1f} s): offline {audio['offline_x_realtime']:.0f}x real time "
        f"({audio['offline_ms_per_second_of_audio']:.2f} ms per second of audio); "
        f"streamed in 20 ms chunks {audio['stream_20ms_chunks_x_realtime']:.0f}x real time"
    )
    if vision is None:
        print("vision: skipped (pass --video FILE with a face)")
    else:
        print(
            f"vision ({args.video}, {vision['frames']} frames at {vision['size']}, max_faces {vision['max_faces']}, "
            f"face on {vision['faces_found']}): "
            f"{vision['fps']:.0f} fps = {vision['total_ms']:.2f} ms/frame: facemesh {vision['facemesh_ms']:.2f} ms, "
            f"primary-face selection {vision['select_ms']:.3f} ms, expression features {vision['expression_ms']:.3f} ms "
            "(decoding excluded)"
        )
