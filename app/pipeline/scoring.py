"""Batch scoring of recorded files: decode -> VAD + ASR -> units -> Scorer -> timeline, plot, report.

A file is transcribed, scored and written chunk by chunk (:mod:`app.pipeline.chunks`): memory does not
grow with the recording and rows appear while the rest is transcribed. Per input ``OUT/<key>/``:
``timeline.csv`` and ``timeline.json`` (both rewritten atomically after every batch of rows; the JSON's
``status`` is the completion marker), ``plot.png`` and ``report.html`` (atomic). Across inputs:
``OUT/summary.csv`` and ``OUT/summary.json``, rewritten atomically after every input. A bad input
(or an unwritable per-input folder) never stops the batch: it gets a status and a reason in the
summary. Transcription is deterministic: the same file, model and options give the same timeline.
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

from app.pipeline.chunks import CHUNK_SECONDS, UnitStream, chunk_bounds
from app.pipeline.config import ScoreConfig
from app.pipeline.outdir import OutputLock, input_folder, sweep_stale_temps
from app.pipeline.report import render_html, render_index, render_plot
from app.pipeline.report_html import read_card
from app.pipeline.scorer import Media, Scorer
from app.pipeline.segment import Unit, sliding_windows, utterances
from app.pipeline.timeline import TimelineRow, TimelineWriter, atomic_write, read_timeline, write_json
from core.config import MODALITIES
from core.errors import FineError
from core.features.decode import decode_audio_partial
from core.features.text import Word
from core.features.transcribe import ASR_RATE, Transcriber

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv", ".m4v", ".ts", ".wmv")
MEDIA_EXTS = AUDIO_EXTS + VIDEO_EXTS
FINISHED = ("complete", "partial", "no_speech", "failed", "skipped")
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
    status: str  # complete | partial | no_speech | failed | skipped
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
    """Files to score with their output keys. Directories are searched recursively; nothing found is
    dropped silently: non-media files, dangling links, hidden files and hidden folders (not entered)
    are listed too, and get a ``skipped`` line in the summary. Given files are kept as they are."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += [(f, str(f.relative_to(p))) for f in _walk(p)]
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


def _walk(root: Path) -> list[Path]:
    """Every file under ``root`` (links to files and dangling links included, linked folders not
    entered), and hidden files and folders as single entries, sorted."""
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        out += [here / d for d in dirs if d.startswith(".") or (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [here / f for f in files]
    return sorted(out)


def fingerprint(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path)}
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class BatchScorer:
    """Scores files one after another with one Scorer and one Transcriber (models loaded once).
    ``progress``: a per-file progress bar (seconds of audio transcribed) within long files."""

    scorer: Scorer
    config: ScoreConfig = field(default_factory=ScoreConfig)
    transcriber: Transcriber | None = None
    progress: bool = False
    chunk_seconds: float = CHUNK_SECONDS

    def __post_init__(self) -> None:
        if self.transcriber is None:
            self.transcriber = Transcriber(
                self.config.whisper_model, self.config.language, self.config.threads
            )
        self._warm = False

    def warm_up(self) -> None:
        """Run the feature extractors once on a second of silence and a word, before the first ASR
        chunk: their lazily loaded weights are then in memory before Whisper's working memory, not on
        top of it in the second chunk (memory of a long file stays that of a short one)."""
        if not self._warm:
            self.scorer.extractors.audio.warm_up()
            self.scorer.features(np.zeros(self.scorer.sample_rate, dtype=np.float32), None, "warm up")
            self._warm = True

    # ------------------------------------------------------------------------------ one file
    def asr_audio(self, media: Media) -> np.ndarray | None:
        """The audio at Whisper's 16 kHz (the decoded samples when the extractor's rate is the same)."""
        if media.audio is None or not media.audio.size:
            return None
        if self.scorer.sample_rate == ASR_RATE:
            return media.audio
        return decode_audio_partial(media.path, ASR_RATE)[0]

    def chunk_words(self, audio: np.ndarray, s0: int, s1: int) -> list[Word]:
        """Words of ``audio[s0:s1]`` (16 kHz), times from the start of the recording. Deterministic."""
        assert self.transcriber is not None
        offset = s0 / ASR_RATE
        tr = self.transcriber.transcribe(audio[s0:s1], deterministic=True)
        return [Word(w.word, w.start + offset, w.end + offset, w.probability) for w in tr.words]

    def transcribe(self, media: Media) -> list[Word]:
        """Voice activity + ASR with word timestamps (faster-whisper's Silero VAD filter), chunk by chunk."""
        audio = self.asr_audio(media)
        if audio is None:
            return []
        words: list[Word] = []
        for s0, s1 in chunk_bounds(audio, ASR_RATE, self.chunk_seconds):
            words += self.chunk_words(audio, s0, s1)
        return words

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
        self._score_units(media, units, rows, on_rows)
        return rows

    def _score_units(
        self,
        media: Media,
        units: Sequence[Unit],
        rows: list[TimelineRow],
        on_rows: Callable[[list[TimelineRow]], None],
    ) -> None:
        step = self.config.batch_size
        for i in range(0, len(units), step):
            chunk = list(units[i : i + step])
            feats = [self.scorer.unit_features(media, u) for u in chunk]
            new = self.scorer.score(chunk, feats, first_index=len(rows))
            rows += new
            on_rows(new)

    def stream(
        self, path: Path, on_rows: Callable[[list[TimelineRow]], None]
    ) -> tuple[Media, list[TimelineRow]]:
        """Decode ``path``, then transcribe, score and hand over rows chunk by chunk (faces of a video
        are tracked in a worker thread meanwhile; scoring waits for them). Returns all rows."""
        from tqdm import tqdm

        self.warm_up()
        media = self.scorer.decode(path)
        rows: list[TimelineRow] = []
        seg = self.config.segment
        with ThreadPoolExecutor(1, thread_name_prefix="fine-faces") as pool:
            faces = pool.submit(self.scorer.track_faces, media)
            try:
                if seg.window is not None:
                    faces.result()  # windows cover the video's length too
                stream = UnitStream(seg, media.duration)
                audio = self.asr_audio(media)
                total = audio.shape[0] / ASR_RATE if audio is not None else 0.0
                show = self.progress and total > self.chunk_seconds
                with tqdm(
                    total=round(total), desc=path.name[:30], unit="s", leave=False, disable=not show
                ) as bar:
                    for s0, s1 in (
                        chunk_bounds(audio, ASR_RATE, self.chunk_seconds) if audio is not None else ()
                    ):
                        units = stream.push(self.chunk_words(audio, s0, s1), s1 / ASR_RATE)
                        if units:
                            faces.result()
                            self._score_units(media, units, rows, on_rows)
                        bar.update(round(s1 / ASR_RATE) - bar.n)
            finally:
                faces.result()  # also when ASR failed: never leave tracking running; raises its error
        self._score_units(media, stream.flush(), rows, on_rows)
        return media, rows

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
        skip = _skip_reason(path)
        if skip:
            return self._finish_bad(path, out, "skipped", skip, t0)
        for stale in (PNG_NAME, HTML_NAME):
            (out / stale).unlink(missing_ok=True)
        meta = self.meta(path)
        media: Media | None = None
        with TimelineWriter(out / CSV_NAME, out / JSON_NAME, meta) as writer:
            try:
                media, rows = self.stream(path, writer.append)
            except FineError as exc:
                return self._finish_bad(path, out, "failed", _without_path(str(exc), path), t0)
            notes = _notes(media)
            writer.meta["duration"] = round(media.duration, 3)
            if not rows:
                reason = "; ".join(["no speech found", *notes, "use --window SECONDS to score fixed windows"])
                writer.close("no_speech", {"reason": reason})
                return self._result(path, key, "no_speech", [], media.duration, reason, t0)
            status = "partial" if media.partial else "complete"
            png = self._plot(path, out, rows, media, notes)
            reason = "; ".join(notes)
            card = read_card(self.scorer.info.path)
            meta = {**_public(writer.meta), "notes": reason, "units": len(rows)}
            page = render_html(meta, rows, png, card, path, out)
            atomic_write(out / HTML_NAME, page.encode("utf-8"))
            writer.close(status, {"reason": reason})
        return self._result(path, key, status, rows, media.duration, reason, t0)

    def _plot(
        self, path: Path, out: Path, rows: Sequence[TimelineRow], media: Media, notes: list[str]
    ) -> bytes | None:
        """The PNG, written; a plot that fails is a note, never a lost timeline."""
        title = f"{path.name} - {len(rows)} {rows[0].kind}s - model {self.scorer.model_id}"
        try:
            png = render_plot(rows, title, media.duration, self.scorer.info.label_range)
        except Exception as exc:  # matplotlib: any error in a figure is no reason to lose the rows
            log.warning("%s: the plot failed (%s: %s); the timeline is kept", path, type(exc).__name__, exc)
            notes.append(f"plot failed ({type(exc).__name__}: {exc})")
            return None
        atomic_write(out / PNG_NAME, png)
        return png

    def _finish_bad(self, path: Path, out: Path, status: str, reason: str, t0: float) -> InputResult:
        log.warning("%s: %s", path, reason)
        doc = {"format": "fine-timeline", "format_version": 1, "status": status, **self.meta(path)}
        try:
            for stale in (CSV_NAME, PNG_NAME, HTML_NAME):
                (out / stale).unlink(missing_ok=True)
            write_json(out / JSON_NAME, {**doc, "reason": reason, "rows": []})
        except OSError as exc:  # the folder itself is the problem: the summary still says why
            log.warning("%s: cannot write %s (%s)", path, out, exc.strerror or exc)
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
        """Score ``inputs`` into ``out`` (holding ``out``'s :class:`OutputLock`)."""
        from tqdm import tqdm

        self.progress = progress
        results: list[InputResult] = []
        with OutputLock(out):
            removed = sweep_stale_temps(out)
            if removed:
                log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, out)
            with tqdm(inputs, desc="scoring", unit="file", disable=not progress) as bar:
                for path, key in bar:
                    bar.set_postfix_str(path.name[:40])
                    results.append(self.score_input(path, out / key, resume))
                    write_summary(out, results)
        return results

    def score_input(self, path: Path, target: Path, resume: bool = False) -> InputResult:
        """One input of a batch (the unit a local run loops over and a Ray worker runs): with
        ``resume``, an input already scored into ``target`` is read back, not recomputed. A per-input
        folder that cannot be used (a link, a file, unwritable) fails this input only."""
        try:
            input_folder(target)
        except (FineError, OSError) as exc:
            reason = str(exc) if isinstance(exc, FineError) else _os_reason(exc, target)
            log.warning("%s: %s", path, reason)
            return InputResult(str(path), target.name, "failed", reason=reason)
        doc = self.is_done(path, target) if resume else None
        if doc is not None:
            log.info("%s: already scored (%s), skipped", path, doc["status"])
            return result_from_doc(path, target.name, doc)
        return self._score_safely(path, target)

    def _score_safely(self, path: Path, target: Path) -> InputResult:
        """``score_file``, with a bug or a library crash on one input reported instead of ending the
        batch; so is an OSError writing its folder (the summary, written by the caller, is fatal)."""
        t0 = time.perf_counter()
        try:
            return self.score_file(path, target)
        except OSError as exc:
            return self._finish_bad(path, target, "failed", _os_reason(exc, target), t0)
        except Exception as exc:
            log.debug("scoring %s failed", path, exc_info=True)
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{INTERNAL} ({type(exc).__name__}: {first}); rerun with -v for details"
            return self._finish_bad(path, target, "failed", reason, t0)


def _os_reason(exc: OSError, target: Path) -> str:
    where = exc.filename or target
    return f"cannot write {where} ({exc.strerror or exc}): check that folder, then rerun with --resume"


def _skip_reason(path: Path) -> str:
    """Why ``path`` is not scored at all ("" when it is scored)."""
    if path.is_symlink() and not path.exists():
        return f"dangling link (to {os.readlink(path)}): its target does not exist"
    if path.is_symlink() and path.is_dir():
        return "link to a folder: not searched (pass the folder itself to score its files)"
    if path.is_dir() and path.name.startswith("."):
        return "hidden folder (its name starts with '.'): not searched; rename it to score its files"
    if path.name.startswith("."):
        return "hidden file (its name starts with '.'): not scored; rename it to score it"
    if path.suffix.lower() not in MEDIA_EXTS:
        return _unsupported(path)
    return ""


def _unsupported(path: Path) -> str:
    kind = path.suffix.lower() or "no extension"
    return f"unsupported file type ({kind}): not an audio or video file"


def _without_path(message: str, path: Path) -> str:
    """The summary names the input already: drop the leading 'PATH: ' of an InputError message."""
    return message.removeprefix(f"{path}: ")


def _notes(media: Media) -> list[str]:
    notes = []
    if media.partial:
        notes.append(
            f"partial: decoding stopped after {media.duration:.1f} s ({media.partial}); "
            "what decoded is scored, the rest of the file is not"
        )
    elif media.truncated:
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


def write_summary(out: Path, results: Sequence[InputResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    w.writerows(r.record() for r in results)
    atomic_write(out / "summary.csv", buf.getvalue().encode("utf-8"))
    write_json(out / "summary.json", {"inputs": [asdict(r) for r in results]})
    atomic_write(out / "index.html", render_index(out, results).encode("utf-8"))
