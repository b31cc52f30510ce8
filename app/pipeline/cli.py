"""``fine score INPUT... --out DIR [--model DIR]``: batch sentiment timelines of recorded files.

Exit status: 0 when no input failed (each is complete, partial, no_speech or skipped); 1 when at least
one input failed (the last line names them; the others are scored as usual); 2 when the run could not
start (a usage error, a bad --model, an --out that cannot be written or that another fine score run is
writing into); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from core.clihelp import add_backend, add_model, add_threads, cli_main, command_parser

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine score",
        "score video/audio files: timeline CSV/JSON, plot and HTML report per input, plus a summary",
        "fine score interview.mp4 --out runs/interview",
        "fine score recordings/ --out runs/study --resume          # a folder, searched recursively",
        "fine score talk.mp4 --out runs/t --model hf:org/name --window 4",
        "fine score talk.mp4 --out runs/t --json | jq '.rows[].score'   # JSON on stdout for pipelines",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="media files or directories (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    add_model(p, "model directory (artifact, .onnx or .engine); default: the shipped default model")
    add_backend(p)
    p.add_argument(
        "--whisper-model",
        default="packaged:tiny.en",
        help="faster-whisper size name (downloads), local CTranslate2 directory, or packaged:tiny.en (offline)",
    )
    p.add_argument("--language", default="en", help="spoken language (default en; 'auto' detects)")
    add_threads(p)
    p.add_argument("--window", type=float, metavar="SECONDS", help="score fixed sliding windows")
    p.add_argument("--hop", type=float, metavar="SECONDS", help="window step (default window/2)")
    p.add_argument(
        "--max-pause", type=float, default=2.0, help="pause (s) that ends an utterance (default 2)"
    )
    p.add_argument("--resume", action="store_true", help="skip inputs already scored into --out")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="score on Ray, one task per input: a local Ray, or join the cluster at ADDRESS (auto, HOST:PORT)",
    )
    p.add_argument("--ray-workers", type=int, help="Ray workers (default: cluster CPUs / --threads)")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per Ray worker (default 0)")
    p.add_argument(
        "--ray-retries", type=int, default=1, help="retries of an input whose worker died (default 1)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (per input: status, files, timeline rows); the rest to stderr",
    )
    p.add_argument(
        "--print-timeline",
        choices=("auto", "always", "never"),
        default="auto",
        help="print each input's timeline (auto: when at most 5 inputs)",
    )
    return p


PRINT_TIMELINE_MAX_INPUTS = 5


def _fail(msg: str) -> int:
    print(f"fine score: {msg}", file=sys.stderr)
    return 2


def _os_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine score", parser(), _configured_run, argv, quiet_hub=True, os_line=_os_line)


def _configured_run(args: argparse.Namespace) -> int:
    from app.pipeline.config import ScoreConfig, SegmentConfig

    config = ScoreConfig(
        whisper_model=args.whisper_model,
        language=None if args.language == "auto" else args.language,
        threads=args.threads,
        backend=args.backend,
        segment=SegmentConfig(max_pause=args.max_pause, window=args.window, hop=args.hop),
    )
    return run(args, config)


def run(args: argparse.Namespace, config: object) -> int:
    from app.pipeline.inputs import find_inputs

    inputs = find_inputs(args.inputs)
    missing = [str(p) for p in args.inputs if not p.exists() and not p.is_symlink()]
    if missing:
        return _fail(f"{missing[0]}: no such file or directory")
    if not inputs:
        return _fail("no input files found")
    from app.pipeline.outdir import OutputLock, check_writable

    args.out.mkdir(parents=True, exist_ok=True)
    check_writable(args.out)  # fail now, in one line, if the output directory is not writable
    with OutputLock(args.out):  # a second run on the same --out is refused here, before models load
        results = _score(args, config, inputs)
    return report(args, results)


def _score(args: argparse.Namespace, config: object, inputs: list[tuple[Path, str]]) -> list[object]:
    from app.assets import resolve_model
    from app.pipeline.batch import BatchScorer
    from app.pipeline.config import ScoreConfig
    from app.pipeline.scorer import Scorer

    assert isinstance(config, ScoreConfig)
    model = resolve_model(args.model)
    if args.ray is not None:
        from app.pipeline.ray_scoring import RayOptions, score_on_ray

        opts = RayOptions(
            None if args.ray == "local" else args.ray, args.ray_workers, args.ray_gpus, args.ray_retries
        )
        given = None if args.model is None else model
        return list(score_on_ray(inputs, args.out, given, config, opts, args.resume, not args.no_progress))
    scorer = Scorer(model, config.backend, threads=config.threads)
    try:
        return list(BatchScorer(scorer, config).run(inputs, args.out, args.resume, not args.no_progress))
    finally:
        scorer.close()


def report(args: argparse.Namespace, results: list[Any]) -> int:
    """Print each input's line (and timeline) and the totals; the exit status (module docstring).
    With ``--json`` stdout carries one JSON document instead (the failed-inputs line still goes to stderr)."""
    if getattr(args, "json", False):
        from app.pipeline.jsonout import emit

        emit(args.out, results)
        return _failed_status(results)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    show = args.print_timeline == "always" or (
        args.print_timeline == "auto" and len(results) <= PRINT_TIMELINE_MAX_INPUTS
    )
    for r in results:
        if show and r.units:
            print_timeline(args.out / r.key)
        score = "" if r.mean_score is None else f" mean {r.mean_score:+.3f}"
        print(f"{r.status:9s} {r.input}: {r.units} units{score}" + (f" ({r.reason})" if r.reason else ""))
        if r.units:
            print(f"          report: {args.out / r.key / 'report.html'}")
    print(
        f"{len(results)} inputs: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; summary in {args.out / 'summary.csv'}"
    )
    return _failed_status(results)


def _failed_status(results: list[Any]) -> int:
    """1 with one stderr line naming the failed inputs when any failed, else 0."""
    failed = [Path(r.input).name for r in results if r.status == "failed"]
    if failed:
        sys.stdout.flush()
        names = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        print(
            f"fine score: {len(failed)} of {len(results)} inputs failed: {names} (exit status 1)",
            file=sys.stderr,
        )
        return 1
    return 0


def print_timeline(folder: Path) -> None:
    """The rows of one input's timeline: time span, score, contributions (T/A/V) and the words."""
    from app.pipeline.timeline import read_timeline
    from core.config import by_modality

    doc = read_timeline(folder / "timeline.json")
    if doc is None:
        return
    model_id = doc["rows"][0]["model_id"] if doc["rows"] else "?"
    print(f"{doc.get('input', folder.name)}  (model {model_id})")
    print("    start     end   score  words   voice    face  transcript")
    for row in doc["rows"]:
        c = by_modality(row["contributions"])
        print(
            f"  {row['start']:6.1f}  {row['end']:6.1f}  {row['score']:+6.2f}  "
            f"{c['text']:+5.2f}  {c['audio']:+6.2f}  {c['vision']:+6.2f}  {row['text'][:60]}"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
