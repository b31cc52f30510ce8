"""``fine live --headless --source camera|FILE``: the live engine without a window, one JSON line per
scored utterance (the timeline row's fields) on stdout; logs and errors on stderr.

``fine live`` without ``--headless`` opens the desktop app (``fine app``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from core.clihelp import add_backend, add_model, add_threads, cli_main, command_parser

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine live",
        "live sentiment from a camera + microphone or a file",
        "fine live --headless --source camera",
        "fine live --headless --source app/assets/demo/demo.mp4 --fast",
        "fine live --headless --source camera --model hf:org/name --record runs/session",
    )
    p.add_argument("--headless", action="store_true", help="no window: print JSON lines (one per utterance)")
    p.add_argument(
        "--source", default="camera", help="'camera' (camera + microphone) or a media FILE to replay"
    )
    add_model(p)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=None,
        help="replay a file at real-time speed (default)",
    )
    pace.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="replay a file as fast as possible (nothing dropped)",
    )
    p.add_argument("--camera", type=int, default=0, help="camera index (default 0)")
    p.add_argument("--mic", default=None, help="microphone device index or name (default: the system's)")
    p.add_argument("--no-camera", action="store_true", help="microphone only")
    p.add_argument("--no-mic", action="store_true", help="camera only")
    p.add_argument("--live", action="store_true", help="also print the rolling score (kind 'live') lines")
    add_backend(p)
    add_threads(p, "CPU threads of the model runner (ASR has its own)")
    p.add_argument(
        "--whisper-model",
        default="packaged:tiny.en",
        help="faster-whisper model (default packaged:tiny.en, offline)",
    )
    p.add_argument(
        "--record", type=Path, default=None, metavar="DIR", help="autosave the timeline (and audio) into DIR"
    )
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p


def emit(row_dict: dict[str, Any], out: TextIO | None = None) -> None:
    """One JSON line on ``out`` (default: the *current* sys.stdout, looked up per call: a default bound
    at import kept writing to whatever stdout was when the module was first imported)."""
    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(row_dict, ensure_ascii=False) + "\n")
    stream.flush()


def build_sources(args: argparse.Namespace, sample_rate: int) -> tuple[Any, Any]:
    """(video, audio) sources for ``--source``; a file that cannot be read is a one-line InputError."""
    from app.live.sources import AudioSource, CameraSource, MicrophoneSource, VideoSource, file_sources

    video: VideoSource | None
    audio: AudioSource | None
    if args.source == "camera":
        mic = None if args.mic is None else (int(args.mic) if str(args.mic).isdigit() else args.mic)
        video = None if args.no_camera else CameraSource(args.camera)
        audio = None if args.no_mic else MicrophoneSource(mic, sample_rate)
        return video, audio
    video, audio = file_sources(args.source, sample_rate)
    return (None if args.no_camera else video), (None if args.no_mic else audio)


def run(args: argparse.Namespace) -> int:
    from app.assets import resolve_model
    from app.live.config import LiveConfig
    from app.live.record import SessionRecorder
    from app.live.session import LiveEvents, LiveSession
    from app.pipeline.scorer import Scorer
    from core.features.decode import check_readable

    model = resolve_model(args.model)
    if args.source != "camera":
        check_readable(args.source)  # before loading models: a typo is a one-line error at once
    is_file = args.source != "camera"
    realtime = True if args.realtime is None else bool(args.realtime)
    if not is_file and not realtime:
        print("fine live: --fast needs a FILE source (a camera runs in real time)", file=sys.stderr)
        return 2
    config = LiveConfig(
        realtime=realtime,
        whisper_model=args.whisper_model,
        threads=args.threads,
        backend=args.backend,
        live_hz=4.0 if args.live else 0.0,
    )
    scorer = Scorer(model, config.backend, threads=config.threads)
    video, audio = build_sources(args, scorer.sample_rate)
    if video is None and audio is None:
        print(f"fine live: {args.source}: nothing to read (no video or audio track)", file=sys.stderr)
        return 2
    lock = threading.Lock()

    def out(row) -> None:  # type: ignore[no-untyped-def]
        with lock:
            emit(row.to_dict())

    last: dict[str, str] = {}

    def err(stage: str, message: str) -> None:
        if last.get(stage) != message:  # a device that stays away is reported once, retried quietly
            last[stage] = message
            print(f"fine live: {stage}: {message} (retrying with backoff)", file=sys.stderr)

    recorder = None
    if args.record is not None:
        meta = {"input": str(args.source), "model_id": scorer.model_id}
        recorder = SessionRecorder(args.record, meta, audio=audio is not None, sample_rate=scorer.sample_rate)
    events = LiveEvents(on_row=out, on_live=out if args.live else None, on_error=err)
    session = LiveSession(scorer, video, audio, config, events, recorder=recorder)
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    session.start()
    try:
        deadline = args.duration
        waited = 0.0
        while not session.finished.is_set() and not stopping.is_set():
            session.finished.wait(0.5)
            waited += 0.5
            if deadline is not None and waited >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        session.stop()
        scorer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine live", parser(), _run_headless, argv, quiet_hub=True)


def _run_headless(args: argparse.Namespace) -> int:
    if not args.headless:
        print(
            "fine live: the window is 'fine app'; pass --headless for JSON lines on stdout", file=sys.stderr
        )
        return 2
    return run(args)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
