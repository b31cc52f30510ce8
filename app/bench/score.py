"""``fine bench score FILE``: time of ``fine score``'s work on a file against faster-whisper alone.

Both sides share one ``WhisperModel`` (same model, threads and compute type, int8 on CPU) and run after
a warm-up, so model loading is not counted. The transcription-only baseline is the same faster-whisper
call the pipeline makes (VAD filter, word timestamps) on the file path (faster-whisper decodes it); for
reference it is also timed without word timestamps, and on samples decoded beforehand (ASR compute only). "scoring" = decode + face tracking + VAD/ASR + segmentation +
features + runner with Shapley contributions; "+ outputs" adds the timeline, plot and HTML writes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from core.clihelp import add_model, add_threads, cli_main, command_parser


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine bench score", __doc__.splitlines()[0], "fine bench score app/assets/demo/demo.mp4"
    )
    p.add_argument("file", type=Path, help="an audio or video file with speech")
    add_model(
        p, "model directory (default: a random-weight FINE of the default size with this install's profile)"
    )
    p.add_argument("--whisper-model", default="packaged:tiny.en")
    add_threads(p)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per side (median reported)")
    p.add_argument("--backend", default="auto")
    return p


def default_model(directory: Path) -> Path:
    """A FINE of the default size with random weights whose profile is what this install computes."""
    import torch

    from core.artifact import ModelCard, save_model
    from core.config import FineConfig
    from core.features.clip import FeatureExtractors
    from core.model import FINE

    profile = FeatureExtractors().profile
    torch.manual_seed(0)
    model = FINE(FineConfig(input_dims=profile.dims(), feature_profile=profile.to_dict())).eval()
    return save_model(model, directory, ModelCard(name="bench-random"))


def run(args: argparse.Namespace) -> int:
    import torch

    from app.pipeline.batch import BatchScorer
    from app.pipeline.config import ScoreConfig
    from app.pipeline.scorer import Scorer
    from core.errors import InputError
    from core.features.decode import decode_audio

    torch.set_num_threads(args.threads)
    config = ScoreConfig(whisper_model=args.whisper_model, threads=args.threads, backend=args.backend)
    with tempfile.TemporaryDirectory(prefix="fine-bench-score-") as tmp:
        model = args.model or default_model(Path(tmp) / "model")
        scorer = Scorer(model, config.backend, threads=config.threads)
        batch = BatchScorer(scorer, config)
        assert batch.transcriber is not None
        whisper = batch.transcriber._load()  # the very WhisperModel the pipeline uses

        def transcribe(words: bool) -> Callable[[], object]:
            def go() -> object:
                segments, _ = whisper.transcribe(
                    str(args.file), language=config.language, word_timestamps=words, vad_filter=True
                )
                return list(segments)

            return go

        n_units = 0

        def score() -> None:
            nonlocal n_units
            media, words = batch.load(args.file)
            n_units = len(batch.score_media(media, lambda rows: None, words))

        counter = iter(range(10**6))

        def score_and_write() -> None:
            batch.score_file(args.file, Path(tmp) / "out" / str(next(counter)))

        for fn in (transcribe(True), score):  # warm-up: model loads, first-call allocations
            fn()
        samples = decode_audio(args.file, 16000)
        if samples is None:
            raise InputError(f"{args.file}: has no audio track; the benchmark needs speech")

        def asr_on_samples() -> object:
            return batch.transcriber.transcribe(samples)  # type: ignore[union-attr]

        sides = {
            "asr": transcribe(True),
            "asr_plain": transcribe(False),
            "asr_samples": asr_on_samples,
            "score": score,
            "full": score_and_write,
        }
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.repeat):  # interleaved, so load from other jobs hits every side alike
            for k, fn in sides.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        t_asr, t_score, t_full = med["asr"], med["score"], med["full"]
        scorer.close()
    print(f"file: {args.file} ({n_units} units); model: {scorer.model_id} on {scorer.runner.describe()}")
    print(
        f"whisper: {config.whisper_model}, cpu int8, {args.threads} threads; median of {args.repeat} interleaved runs after warm-up"
    )
    print(f"  transcription only (VAD + word timestamps) {t_asr * 1000:8.0f} ms   1.00x")
    for key, label in (
        ("asr_plain", "(VAD, no word times)    "),
        ("asr_samples", "(decoded samples in)    "),
    ):
        print(f"  transcription only {label} {med[key] * 1000:8.0f} ms   {med[key] / t_asr:.2f}x")
    print(f"  fine score: scoring                         {t_score * 1000:8.0f} ms   {t_score / t_asr:.2f}x")
    print(f"  fine score: scoring + outputs               {t_full * 1000:8.0f} ms   {t_full / t_asr:.2f}x")
    target = "meets" if t_score <= 1.3 * t_asr else "misses"
    print(f"target scoring <= 1.3x transcription: {target} ({t_score / t_asr:.2f}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine bench score", parser(), _checked_run, argv)


def _checked_run(args: argparse.Namespace) -> int:
    if args.repeat < 1 or args.threads < 1:
        print("fine bench score: --repeat and --threads must be >= 1", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(
            f"fine bench score: {args.file}: no such file; pass an audio or video file with speech",
            file=sys.stderr,
        )
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
