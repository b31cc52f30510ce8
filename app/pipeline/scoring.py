"""Batch scoring of recorded files: decode -> VAD + ASR -> units -> Scorer -> timeline, plot, report.

Per input ``OUT/<key>/``: ``timeline.csv`` (appended per batch of units, fsync'ed), ``timeline.json``
(atomic; ``status`` is the completion marker), ``plot.png`` and ``report.html`` (atomic). Across
inputs: ``OUT/summary.csv`` and ``OUT/summary.json``, rewritten atomically after every input. A bad
input never stops the batch: it gets a status and a reason in the summary.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.config import ScoreConfig
from app.pipeline.report import render_html, render_index, render_plot
from app.pipeline.report_html import read_card
from app.pipeline.scorer import Media, Scorer
from app.pipeline.segment import Unit, sliding_windows, utterances
from app.pipeline.timeline import TimelineRow, TimelineWriter, atomic_write, read_timeline, write_json
from core.config import MODALITIES
from core.errors import FineError
from core.features.decode import decode_audio
from core.features.text import Word
from core.features.transcribe import ASR_RATE, Transcriber

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv", ".m4v", ".ts", ".wmv")
MEDIA_EXTS = AUDIO_EXTS + VIDEO_EXTS
FINISHED = ("complete", "no_speech", "failed", "skipped")
INTERNAL = "internal error"
CSV_NAME, JSON_NAME, PNG_NAME, HTML_NAME = "timeline.csv", "timeline.json", "plot.png", "report.html"
SUMMARY_COLUMNS = [
    "input",
    "key",
    "status",
    "units",
    "duration",
    "mean_score",
    "min_score",
    "max_score",
    *(f"mean_contribution_{m}" for m in MODALITIES),
    "reason",
    "seconds",
]


@dataclass
class InputResult:
    """One line of the summary."""

    input: str
    key: str
    status: str  # complete | no_speech | failed | skipped
    units: int = 0
    duration: float | None = None
    mean_score: float | None = None
    min_score: float | None = None
    max_score: float | None = None
    mean_contribution: tuple[float, ...] | None = None
    reason: str = ""
    seconds: float = 0.0

    def record(self) -> list[str]:
        def num(x: float | None) -> str:
            return "" if x is None else f"{x:.4f}"

        contrib = self.mean_contribution or (None,) * len(MODALITIES)
        return [
            self.input,
            self.key,
            self.status,
            str(self.units),
            num(self.duration),
            num(self.mean_score),
            num(self.min_score),
            num(self.max_score),
            *(num(c) for c in contrib),
            self.reason,
            f"{self.seconds:.2f}",
        ]


def find_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Files to score with their output keys. Directories are searched recursively for every non-hidden
    file (non-media files are reported as unsupported, not silently dropped); given files are kept."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts)
            )
            found += [(f, str(f.relative_to(p))) for f in files]
        else:
            found.append((p, p.name))
    keys: set[str] = set()
    out = []
    for path, rel in found:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", rel).strip("_") or "input"
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}-{n}"
        keys.add(key)
        out.append((path, key))
    return out


def fingerprint(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path)}
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class BatchScorer:
    """Scores files one after another with one Scorer and one Transcriber (models loaded once)."""

    scorer: Scorer
    config: ScoreConfig = field(default_factory=ScoreConfig)
    transcriber: Transcriber | None = None

    def __post_init__(self) -> None:
        if self.transcriber is None:
            self.transcriber = Transcriber(
                self.config.whisper_model, self.config.language, self.config.threads
            )

    # ------------------------------------------------------------------------------ one file
    def transcribe(self, media: Media) -> list[Word]:
        """Voice activity + ASR with word timestamps (faster-whisper's Silero VAD filter)."""
        if media.audio is None or not media.audio.size:
            return []
        audio: np.ndarray | None = media.audio
        if self.scorer.sample_rate != ASR_RATE:
            audio = decode_audio(media.path, ASR_RATE)
        if audio is None:
            return []
        assert self.transcriber is not None
        return list(self.transcriber.transcribe(audio).words)

    def units(self, media: Media, words: Sequence[Word]) -> list[Unit]:
        seg = self.config.segment
        if seg.window is not None:
            return sliding_windows(media.duration, words, seg)
        return utterances(words, seg)

    def load(self, path: Path) -> tuple[Media, list[Word]]:
        """Decode, then ASR in a worker thread while faces are tracked here (CTranslate2 releases the
        GIL): on a machine with cores to spare the face pass costs no wall time."""
        media = self.scorer.decode(path)
        if not media.info.has_video:
            return self.scorer.track_faces(media), self.transcribe(media)
        with ThreadPoolExecutor(1, thread_name_prefix="fine-asr") as pool:
            words = pool.submit(self.transcribe, media)
            try:
                self.scorer.track_faces(media)
            finally:
                result = words.result()  # also when tracking failed: never leave ASR running
        return media, result

    def score_media(
        self,
        media: Media,
        on_rows: Callable[[list[TimelineRow]], None],
        words: Sequence[Word] | None = None,
    ) -> list[TimelineRow]:
        """Cut ``media`` into units (transcribing it unless ``words`` are given) and score them;
        ``on_rows`` receives each scored batch as it is done."""
        units = self.units(media, self.transcribe(media) if words is None else words)
        rows: list[TimelineRow] = []
        step = self.config.batch_size
        for i in range(0, len(units), step):
            chunk = units[i : i + step]
            feats = [self.scorer.unit_features(media, u) for u in chunk]
            new = self.scorer.score(chunk, feats, first_index=len(rows))
            rows += new
            on_rows(new)
        return rows

    def meta(self, path: Path) -> dict[str, Any]:
        seg = self.config.segment
        return {
            "input": str(path),
            "fingerprint": fingerprint(path),
            "model_id": self.scorer.model_id,
            "mode": "window" if seg.window is not None else "utterance",
            "segment": asdict(seg),
            "whisper_model": self.config.whisper_model,
        }

    def is_done(self, path: Path, out: Path) -> dict[str, Any] | None:
        doc = read_timeline(out / JSON_NAME)
        if doc is None or doc.get("status") not in FINISHED:
            return None
        if str(doc.get("reason", "")).startswith(INTERNAL):  # a bug or a crash, not the input: retry
            return None
        want = self.meta(path)
        same = all(doc.get(k) == want[k] for k in ("fingerprint", "model_id", "segment", "whisper_model"))
        return doc if same else None

    def score_file(self, path: Path, out: Path) -> InputResult:
        """Score one input into ``out``; every problem that is the input's fault becomes a reason."""
        t0 = time.perf_counter()
        key = out.name
        out.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() not in MEDIA_EXTS:
            return self._finish_bad(path, out, "skipped", _unsupported(path), t0)
        try:
            media, words = self.load(path)
        except FineError as exc:
            return self._finish_bad(path, out, "failed", _without_path(str(exc), path), t0)
        notes = _notes(media)
        for stale in (PNG_NAME, HTML_NAME):
            (out / stale).unlink(missing_ok=True)
        meta = {**self.meta(path), "duration": round(media.duration, 3)}
        with TimelineWriter(out / CSV_NAME, out / JSON_NAME, meta) as writer:
            try:
                rows = self.score_media(media, writer.append, words)
            except FineError as exc:
                reason = _without_path(str(exc), path)
                writer.close("failed", {"reason": reason})
                return self._result(path, key, "failed", [], media.duration, reason, t0)
            if not rows:
                reason = "; ".join(["no speech found", *notes, "use --window SECONDS to score fixed windows"])
                writer.close("no_speech", {"reason": reason})
                return self._result(path, key, "no_speech", [], media.duration, reason, t0)
            reason = "; ".join(notes)
            title = f"{path.name} - {len(rows)} {rows[0].kind}s - model {self.scorer.model_id}"
            png = render_plot(rows, title, media.duration, self.scorer.info.label_range)
            atomic_write(out / PNG_NAME, png)
            card = read_card(self.scorer.info.path)
            page = render_html({**_public(meta), "notes": reason}, rows, png, card, path, out)
            atomic_write(out / HTML_NAME, page.encode("utf-8"))
            writer.close("complete", {"reason": reason})
        return self._result(path, key, "complete", rows, media.duration, reason, t0)

    def _finish_bad(self, path: Path, out: Path, status: str, reason: str, t0: float) -> InputResult:
        log.warning("%s: %s", path, reason)
        for stale in (CSV_NAME, PNG_NAME, HTML_NAME):
            (out / stale).unlink(missing_ok=True)
        doc = {"format": "fine-timeline", "format_version": 1, "status": status, **self.meta(path)}
        write_json(out / JSON_NAME, {**doc, "reason": reason, "rows": []})
        return self._result(path, out.name, status, [], None, reason, t0)

    @staticmethod
    def _result(
        path: Path,
        key: str,
        status: str,
        rows: Sequence[TimelineRow],
        duration: float | None,
        reason: str,
        t0: float,
    ) -> InputResult:
        return result_from_rows(path, key, status, rows, duration, reason, time.perf_counter() - t0)

    # ------------------------------------------------------------------------------ many files
    def run(
        self, inputs: Sequence[tuple[Path, str]], out: Path, resume: bool = False, progress: bool = True
    ) -> list[InputResult]:
        from tqdm import tqdm

        removed = sweep_stale_temps(out)
        if removed:
            log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, out)
        results: list[InputResult] = []
        with tqdm(inputs, desc="scoring", unit="file", disable=not progress) as bar:
            for path, key in bar:
                bar.set_postfix_str(path.name[:40])
                results.append(self.score_input(path, out / key, resume))
                write_summary(out, results)
        return results

    def score_input(self, path: Path, target: Path, resume: bool = False) -> InputResult:
        """One input of a batch (the unit a local run loops over and a Ray worker runs): with
        ``resume``, an input already scored into ``target`` is read back, not recomputed."""
        doc = self.is_done(path, target) if resume else None
        if doc is not None:
            log.info("%s: already scored (%s), skipped", path, doc["status"])
            return result_from_doc(path, target.name, doc)
        return self._score_safely(path, target)

    def _score_safely(self, path: Path, target: Path) -> InputResult:
        """``score_file``, with a bug or a library crash on one input reported instead of ending the
        batch. OSError (an unwritable output directory, a full disk) is fatal and propagates."""
        t0 = time.perf_counter()
        try:
            return self.score_file(path, target)
        except OSError:
            raise
        except Exception as exc:
            log.debug("scoring %s failed", path, exc_info=True)
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{INTERNAL} ({type(exc).__name__}: {first}); rerun with -v for details"
            return self._finish_bad(path, target, "failed", reason, t0)


def _unsupported(path: Path) -> str:
    kind = path.suffix.lower() or "no extension"
    return f"unsupported file type ({kind}): not an audio or video file"


def _without_path(message: str, path: Path) -> str:
    """The summary names the input already: drop the leading 'PATH: ' of an InputError message."""
    return message.removeprefix(f"{path}: ")


def _notes(media: Media) -> list[str]:
    notes = []
    if media.truncated:
        notes.append(
            f"only {media.duration:.1f} s of the {media.info.duration:.1f} s the file declares could be "
            "decoded: it may be truncated"
        )
    if media.audio is None:
        notes.append("no audio track: voice and words absent")
    elif not media.audio.size or float(np.sqrt(np.mean(np.square(media.audio)))) < 10 ** (-50 / 20):
        notes.append("silent audio")
    if media.vision is None:
        notes.append("no video track: face absent")
    elif not media.has_face:
        notes.append("no face found: face absent")
    return notes


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("fingerprint", "segment")}


def result_from_rows(
    path: Path,
    key: str,
    status: str,
    rows: Sequence[Any],
    duration: float | None,
    reason: str,
    seconds: float,
) -> InputResult:
    scores = [float(r.score if isinstance(r, TimelineRow) else r["score"]) for r in rows]
    contrib = None
    if rows:
        c = np.array([r.contributions if isinstance(r, TimelineRow) else r["contributions"] for r in rows])
        contrib = tuple(float(x) for x in c.mean(axis=0))
    return InputResult(
        input=str(path),
        key=key,
        status=status,
        units=len(rows),
        duration=duration,
        mean_score=float(np.mean(scores)) if scores else None,
        min_score=min(scores) if scores else None,
        max_score=max(scores) if scores else None,
        mean_contribution=contrib,
        reason=reason,
        seconds=seconds,
    )


def result_from_doc(path: Path, key: str, doc: dict[str, Any]) -> InputResult:
    res = result_from_rows(
        path, key, doc["status"], doc.get("rows", []), doc.get("duration"), doc.get("reason", ""), 0
    )
    res.reason = (res.reason + "; " if res.reason else "") + "resumed: not recomputed"
    return res


def sweep_stale_temps(out: Path) -> int:
    """Delete the hidden ``.NAME.XXXX.tmp`` files that :func:`core.artifact.atomic_write_bytes` leaves
    when a run is killed mid-write (SIGKILL cannot be caught). The finished files they were meant to
    replace are intact; the temporaries are never read. Returns how many were removed."""
    if not out.is_dir():
        return 0
    n = 0
    for tmp in out.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def write_summary(out: Path, results: Sequence[InputResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    w.writerows(r.record() for r in results)
    atomic_write(out / "summary.csv", buf.getvalue().encode("utf-8"))
    write_json(out / "summary.json", {"inputs": [asdict(r) for r in results]})
    atomic_write(out / "index.html", render_index(out, results).encode("utf-8"))
