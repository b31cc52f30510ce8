"""``fine bench features``: extraction speed per stage on one core (numbers printed, never a timed test).

Audio: decoded samples -> features (decoding excluded), as a multiple of real time, offline and streamed
in 20 ms chunks. Voice (the default model's Whisper tiny.en encoder states, core.features.voice): ms per
scored unit of a few lengths cut from the same audio (repeated when shorter), on ``--cores`` threads,
beside the hand-made features of the same units. Vision: frames decoded and resized to 640x360 beforehand; per frame the cost of
FaceMesh (detection + landmarks), primary-face selection and expression features, and the total in fps.
Without ``--video``/``--audio`` a generated signal is used for audio and the vision part is skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from core.clihelp import cli_main, command_parser
from core.errors import FineError, MissingDependencyError

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
    offline = _best_of(repeats, ex.extract, signal)
    chunk = int(0.02 * sr)

    def streamed() -> None:
        s = ex.stream()
        for i in range(0, signal.size, chunk):
            s.push(signal[i : i + chunk])

    stream = _best_of(max(1, repeats // 2), streamed)
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


def _best_of(repeats: int, fn: Callable[..., object], *args: Any) -> float:
    """The shortest of ``repeats`` timings of ``fn(*args)``, in seconds."""
    return min(_timed(lambda: fn(*args)) for _ in range(repeats))


def bench_voice(signal: np.ndarray, units: Sequence[float], repeats: int = 3) -> dict[str, Any]:
    """Per unit of each length in ``units`` (seconds of ``signal`` from its start, repeated when shorter):
    the Whisper-encoder voice features (``VoiceFeatureExtractor.extract``, what a scored unit costs: the
    hand-made presence check, the encoder pass and pooling) and the hand-made features of the same unit.
    Whisper runs on one thread, as it always does for the voice features (``VOICE_THREADS``)."""
    from core.features.audio import AudioFeatureExtractor
    from core.features.voice import NAME, VOICE_THREADS, VoiceFeatureExtractor

    voice = VoiceFeatureExtractor()
    hand = AudioFeatureExtractor()
    sr = voice.config.sample_rate
    voice.warm_up()  # loads Whisper (excluded) and runs one pass
    rows = []
    for seconds in units:
        unit = np.resize(signal, round(seconds * sr))  # repeated when the signal is shorter
        voice_s = _best_of(repeats, voice.extract, unit)
        hand_s = _best_of(repeats, hand.extract, unit)
        rows.append(
            {
                "seconds": seconds,
                "present": bool(hand.extract(unit).present),
                "ms": 1e3 * voice_s,
                "x_realtime": seconds / voice_s,
                "handmade_ms": 1e3 * hand_s,
                "handmade_x_realtime": seconds / hand_s,
            }
        )
    return {
        "profile": NAME,
        "model": voice.config.model,
        "dim": voice.config.dim,
        "threads": VOICE_THREADS,
        "units": rows,
    }


def _seconds_list(text: str) -> list[float]:
    """``2,6,15`` -> [2.0, 6.0, 15.0]; ``none`` -> []."""
    if text.strip().lower() == "none":
        return []
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 2,6,15 or none, got {text!r}") from None
    if any(not 0.1 <= v <= 60 for v in values):
        raise argparse.ArgumentTypeError(f"unit lengths must be in [0.1, 60] seconds, got {text!r}")
    return values


def bench_vision(
    video: Path, frames: int = 150, width: int = 640, height: int = 360, max_faces: int = 1
) -> dict[str, Any]:
    """Per frame: FaceMesh, primary-face selection, geometry, and (profile v2) the aligned gray crop and
    the expression encoder, each timed on its own; plus the encoder alone on a batch of crops."""
    import cv2

    from core.features.decode import iter_video_frames
    from core.features.expression import align_face, to_gray
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
    encoder = ex.expression_encoder
    assert encoder is not None
    size = encoder.config.size
    for img in images[:5]:  # warm-up (graph start, first detection)
        tracker.landmarks(img)
    encoder(np.zeros((1, size, size), dtype=np.uint8))
    t = dict.fromkeys(("mesh", "select", "geometry", "crop", "encoder"), 0.0)
    found = 0
    previous = None
    crops = []
    for img in images:
        t0 = time.perf_counter()
        faces = tracker.landmarks(img)
        t1 = time.perf_counter()
        face = select_primary(faces, previous)
        t2 = time.perf_counter()
        t3 = t4 = t5 = t2
        if face is not None:
            expression_features(face.landmarks)
            t3 = time.perf_counter()
            crop = align_face(to_gray(img), face.landmarks, size)
            t4 = time.perf_counter()
            encoder(crop)
            t5 = time.perf_counter()
            crops.append(crop)
            previous = face.box
            found += 1
        for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[k] += dt
    ex.reset()
    n = len(images)
    total = sum(t.values())
    batch = np.stack(crops[:32]) if crops else np.zeros((32, size, size), dtype=np.uint8)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        encoder(batch)
    batch_ms = 1e3 * (time.perf_counter() - t0) / (reps * len(batch))
    per_face = (t["crop"] + t["encoder"]) / max(found, 1)
    ort_ms = _encoder_onnxruntime_ms(encoder, crops[:50] or [batch[0]])
    return {
        "frames": n,
        "size": f"{width}x{height}",
        "max_faces": max_faces,
        "faces_found": found,
        "facemesh_ms": 1e3 * t["mesh"] / n,
        "select_ms": 1e3 * t["select"] / n,
        "expression_ms": 1e3 * t["geometry"] / n,
        "crop_ms": 1e3 * t["crop"] / max(found, 1),
        "encoder_ms": 1e3 * t["encoder"] / max(found, 1),
        "crop_encoder_faces_per_s": 1.0 / per_face if per_face > 0 else float("inf"),
        "encoder_batch32_ms_per_face": batch_ms,
        "encoder_backend": "torch" if encoder.backend is None else type(encoder.backend).__name__,
        "encoder_onnxruntime_ms": ort_ms,
        "crop_encoder_onnxruntime_faces_per_s": (
            1e3 / (1e3 * t["crop"] / max(found, 1) + ort_ms) if ort_ms is not None else None
        ),
        "total_ms": 1e3 * total / n,
        "fps": n / total,
    }


def _encoder_onnxruntime_ms(encoder: Any, crops: list[np.ndarray]) -> float | None:
    """The expression encoder as ONNX in onnxruntime (one thread), one face at a time: ms per face; ``None``
    without onnxruntime. (What ``fine export`` writes beside a model as ``expression.onnx``.)"""
    import tempfile

    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        return None
    s = encoder.config.size
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "expression.onnx")
        torch.onnx.export(
            encoder.net.eval(),
            (torch.zeros(1, 1, s, s),),
            path,
            input_names=["face"],
            dynamic_axes={"face": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xs = [c.astype(np.float32)[None, None] for c in crops]
    for x in xs[:5]:
        sess.run(None, {"face": x})
    t0 = time.perf_counter()
    for x in xs:
        sess.run(None, {"face": x})
    return 1e3 * (time.perf_counter() - t0) / len(xs)


def main(argv: list[str] | None = None) -> int:
    p = command_parser("fine bench features", __doc__.splitlines()[0], "fine bench features")
    p.add_argument(
        "--audio", type=Path, help="audio or video file to time audio features on (default: generated)"
    )
    p.add_argument("--seconds", type=float, default=60.0, help="length of the generated audio")
    p.add_argument(
        "--voice-units",
        type=_seconds_list,
        default=[2.0, 6.0, 15.0],
        metavar="S,S,...",
        help="unit lengths (s) to time the Whisper voice features on, cut from the audio (default 2,6,15; none: skip)",
    )
    p.add_argument("--video", type=Path, help="video with a face to time vision features on")
    p.add_argument("--frames", type=int, default=150, help="video frames to time")
    p.add_argument("--max-faces", type=int, default=1, help="faces FaceMesh tracks (default 1, as extracted)")
    p.add_argument("--cores", type=int, default=1, help="CPU cores to use (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return cli_main("fine bench features", p, _bench, argv)


def _bench(args: argparse.Namespace) -> int:
    with _cores(args.cores) as pinned:
        audio, voice, vision, source = _run(args)
    _report(args, pinned, source, audio, voice, vision)
    return 0


def _run(
    args: argparse.Namespace,
) -> tuple[dict[str, float], dict[str, Any] | None, dict[str, Any] | None, str]:
    if args.audio is not None:
        from core.features.decode import load_audio

        signal, source = load_audio(args.audio), str(args.audio)
    else:
        signal, source = _synthetic_speech(args.seconds), f"generated {args.seconds:g} s"
    audio = bench_audio(signal)
    voice = None
    if args.voice_units:
        try:
            voice = bench_voice(signal, args.voice_units)
        except MissingDependencyError as exc:
            log.warning("voice features skipped: %s", exc)
    vision = (
        bench_vision(args.video, args.frames, max_faces=args.max_faces) if args.video is not None else None
    )
    return audio, voice, vision, source


def _report(
    args: argparse.Namespace,
    pinned: str,
    source: str,
    audio: dict[str, float],
    voice: dict[str, Any] | None,
    vision: dict[str, Any] | None,
) -> None:
    if args.json:
        print(json.dumps({"cores": args.cores, "audio": audio, "voice": voice, "vision": vision}))
        return
    print(f"cores: {args.cores} ({pinned})")
    print(
        f"audio ({source}, {audio['seconds']:.1f} s): offline {audio['offline_x_realtime']:.0f}x real time "
        f"({audio['offline_ms_per_second_of_audio']:.2f} ms per second of audio); "
        f"streamed in 20 ms chunks {audio['stream_20ms_chunks_x_realtime']:.0f}x real time"
    )
    _report_voice(source, voice)
    if vision is None:
        print("vision: skipped (pass --video FILE with a face)")
    else:
        print(
            f"vision ({args.video}, {vision['frames']} frames at {vision['size']}, max_faces {vision['max_faces']}, "
            f"face on {vision['faces_found']}): "
            f"{vision['fps']:.0f} fps = {vision['total_ms']:.2f} ms/frame: facemesh {vision['facemesh_ms']:.2f} ms, "
            f"primary-face selection {vision['select_ms']:.3f} ms, geometry {vision['expression_ms']:.3f} ms, "
            f"aligned crop {vision['crop_ms']:.2f} ms, expression encoder ({vision['encoder_backend']}) "
            f"{vision['encoder_ms']:.2f} ms per face (decoding excluded)"
        )
        print(
            f"crop + expression encoder: {vision['crop_encoder_faces_per_s']:.0f} faces/s one at a time "
            f"(target >= 100 on one core); encoder alone in batches of 32: "
            f"{vision['encoder_batch32_ms_per_face']:.2f} ms per face"
        )
        if vision["encoder_onnxruntime_ms"] is not None:
            print(
                f"expression encoder in onnxruntime (what 'fine export' deploys): "
                f"{vision['encoder_onnxruntime_ms']:.2f} ms per face; crop + encoder "
                f"{vision['crop_encoder_onnxruntime_faces_per_s']:.0f} faces/s"
            )


def _report_voice(source: str, voice: dict[str, Any] | None) -> None:
    if voice is None:
        print("voice: skipped (--voice-units none, or faster-whisper is not installed)")
        return
    print(
        f"voice ({voice['profile']}, {voice['model']}, {voice['dim']}-d, {voice['threads']} thread(s); "
        f"units cut from {source}) beside the hand-made features of the same units:"
    )
    for row in voice["units"]:
        silent = "" if row["present"] else " (silent: not encoded)"
        print(
            f"  {row['seconds']:g} s unit: voice {row['ms']:.0f} ms ({row['x_realtime']:.1f}x real time), "
            f"hand-made {row['handmade_ms']:.1f} ms ({row['handmade_x_realtime']:.0f}x real time){silent}"
        )
