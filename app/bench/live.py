"""``fine bench live [FILE...]``: replay recordings through the live engine in real time and report
what a user feels: end of an utterance -> its score, preview and face-tracking frame rates, CPU use.

Numbers, not a test: the machine's load (printed) moves them. Latency is stream time: a replay is
paced by the same clock the utterance times are measured on, so ``scored_at - end`` is what a person
talking into the microphone would wait.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from core.clihelp import add_runtime_arguments, cli_main, command_parser

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine bench live",
        __doc__.splitlines()[0] if __doc__ else "",
        "fine bench live",
        "fine bench live app/assets/demo/demo.mp4 --json",
    )
    p.add_argument(
        "files", nargs="*", type=Path, help="recordings with a face and speech (default: the demo clip)"
    )
    add_runtime_arguments(p, threads_help="CPU threads of the model runner")
    p.add_argument("--asr-threads", type=int, default=2, help="faster-whisper threads (default 2)")
    p.add_argument("--repeat", type=int, default=1, help="replays per file (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def _replay(scorer: Any, transcriber: Any, path: Path, config: Any) -> dict[str, Any]:
    from app.live.session import LiveSession
    from app.live.sources import file_sources

    video, audio = file_sources(path, scorer.sample_rate)
    session = LiveSession(scorer, video, audio, config, transcriber=transcriber)
    session.warm_up()
    cpu0, wall0 = os.times(), time.monotonic()
    session.start()
    session.wait(600)
    wall = time.monotonic() - wall0
    cpu1 = os.times()
    session.stop()
    video_seconds = session.vision_track.latest.time if session.vision_track.latest else 0.0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "file": str(path),
        "utterances": [
            {
                "end": round(r.end, 3),
                "latency": round(r.latency, 3),
                "asr": round(r.asr_at - r.end, 3),
                "text": row.text,
            }
            for r, row in zip(session.latencies, session.rows)
        ],
        "preview_fps": session.preview_meter.count / max(video_seconds, 1e-6),
        "vision_fps": session.vision_meter.count / max(video_seconds, 1e-6),
        "vision_capacity_fps": session.vision_meter.count / max(session.vision_busy, 1e-6),
        "dropped_frames": session.dropped_frames,
        "live_scores": len(session.live_rows),
        "wall_s": wall,
        "cpu_cores": cpu / max(wall, 1e-6),
    }


def _quantile(xs: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default) of a non-empty list."""
    s = sorted(xs)
    i = q * (len(s) - 1)
    lo = int(i)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (i - lo)


def run(args: argparse.Namespace) -> int:
    from app.assets import DEMO_CLIP, resolve_model
    from app.live.config import LiveConfig
    from app.pipeline.scorer import Scorer
    from core.features.transcribe import Transcriber

    files = args.files or [DEMO_CLIP]
    for f in files:
        if not f.is_file():
            print(f"fine bench live: {f}: no such file", file=sys.stderr)
            return 2
    config = LiveConfig(
        realtime=True, threads=args.threads, asr_threads=args.asr_threads, backend=args.backend
    )
    scorer = Scorer(resolve_model(args.model), config.backend, threads=config.threads)
    transcriber = Transcriber(config.whisper_model, config.language, config.asr_threads)
    load0 = os.getloadavg()
    runs = [_replay(scorer, transcriber, f, config) for f in files for _ in range(args.repeat)]
    load1 = os.getloadavg()
    scorer.close()
    lat = [u["latency"] for r in runs for u in r["utterances"]]
    asr = [u["asr"] for r in runs for u in r["utterances"]]
    summary = {
        "model": scorer.model_id,
        "runner": scorer.runner.describe(),
        "cpus": os.cpu_count(),
        "loadavg_before": load0,
        "loadavg_after": load1,
        "utterances": len(lat),
        "latency_median_s": statistics.median(lat) if lat else None,
        "latency_p90_s": _quantile(lat, 0.9) if lat else None,
        "latency_max_s": max(lat) if lat else None,
        "asr_commit_median_s": statistics.median(asr) if asr else None,
        "preview_fps": statistics.mean(r["preview_fps"] for r in runs),
        "vision_fps": statistics.mean(r["vision_fps"] for r in runs),
        "vision_capacity_fps": statistics.mean(r["vision_capacity_fps"] for r in runs),
        "cpu_cores": statistics.mean(r["cpu_cores"] for r in runs),
        "runs": runs,
    }
    print(
        f"model {summary['model']} on {summary['runner']}; {summary['cpus']} CPUs; "
        f"load average {load0[0]:.2f} before, {load1[0]:.2f} after (1 min)"
    )
    for r in runs:
        lats = ", ".join(f"{u['latency']:.2f}" for u in r["utterances"]) or "-"
        print(
            f"  {Path(r['file']).name}: utterance end -> score {lats} s; preview {r['preview_fps']:.1f} fps, "
            f"vision {r['vision_fps']:.1f} fps (capacity {r['vision_capacity_fps']:.0f}), "
            f"{r['dropped_frames']} frames dropped, CPU {100 * r['cpu_cores']:.0f}% of one core"
        )
    if lat:
        print(
            f"latency median {summary['latency_median_s']:.2f} s, p90 {summary['latency_p90_s']:.2f} s, "
            f"max {summary['latency_max_s']:.2f} s "
            f"({len(lat)} utterances; ASR commit median {summary['asr_commit_median_s']:.2f} s)"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine bench live", parser(), run, argv, quiet_hub=True)
