"""Batch stage: recorded files -> decode -> VAD + ASR -> units -> Scorer -> timeline, plot, report.

A file is transcribed, scored and written chunk by chunk (:mod:`app.pipeline.chunks`): memory does not
grow with the recording and rows appear while the rest is transcribed. Per input ``OUT/<key>/``:
``timeline.csv`` and ``timeline.json`` (both rewritten atomically after every batch of rows; the JSON's
``status`` is the completion marker), ``plot.png`` and ``report.html`` (atomic). Across inputs, the
summary (:mod:`app.pipeline.summary`) is rewritten after every input. A bad input (or an unwritable
per-input folder) never stops the batch: it gets a status and a reason in the summary. Which inputs
are scored is :mod:`app.pipeline.inputs`; what ``--resume`` keeps, :mod:`app.pipeline.resume`.
Transcription is deterministic: the same file, model and options give the same timeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.chunks import CHUNK_SECONDS, UnitStream, chunk_bounds
from app.pipeline.config import ScoreConfig
from app.pipeline.inputs import skip_reason
from app.pipeline.media import Media, asr_audio, decode, media_notes, track_faces
from app.pipeline.outdir import (
    CSV_NAME,
    HTML_NAME,
    JSON_NAME,
    PNG_NAME,
    OutputLock,
    input_folder,
    sweep_stale_temps,
)
from app.pipeline.report import render_html, render_plot
from app.pipeline.report_html import read_card
from app.pipeline.resume import INTERNAL, finished_doc, input_meta
from app.pipeline.scorer import Scorer
from app.pipeline.segment import Unit, sliding_windows, utterances
from app.pipeline.summary import InputResult, result_from_doc, result_from_rows, write_summary
from app.pipeline.timeline import TimelineRow, TimelineWriter, atomic_write, write_json
from core.errors import FineError
from core.features.text import Word
from core.features.transcribe import ASR_RATE, Transcriber

log = logging.getLogger(__name__)


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
    def _decode(self, path: Path) -> Media:
        return decode(path, self.scorer.sample_rate, self.scorer.extractors.config.vision.fps)

    def _track_faces(self, media: Media) -> Media:
        return track_faces(media, self.scorer.extractors.vision)

    def chunk_words(self, audio: np.ndarray, s0: int, s1: int) -> list[Word]:
        """Words of ``audio[s0:s1]`` (16 kHz), times from the start of the recording. Deterministic."""
        assert self.transcriber is not None
        offset = s0 / ASR_RATE
        tr = self.transcriber.transcribe(audio[s0:s1], deterministic=True)
        return [Word(w.word, w.start + offset, w.end + offset, w.probability) for w in tr.words]

    def transcribe(self, media: Media) -> list[Word]:
        """Voice activity + ASR with word timestamps (faster-whisper's Silero VAD filter), chunk by chunk."""
        audio = asr_audio(media)
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
        media = self._decode(path)
        if not media.info.has_video:
            return self._track_faces(media), self.transcribe(media)
        with ThreadPoolExecutor(1, thread_name_prefix="fine-asr") as pool:
            words = pool.submit(self.transcribe, media)
            try:
                self._track_faces(media)
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
        self.warm_up()
        media = self._decode(path)
        rows: list[TimelineRow] = []
        seg = self.config.segment
        with ThreadPoolExecutor(1, thread_name_prefix="fine-faces") as pool:
            faces = pool.submit(self._track_faces, media)
            try:
                if seg.window is not None:
                    faces.result()  # windows cover the video's length too
                stream = UnitStream(seg, media.duration)
                self._stream_chunks(media, stream, faces, rows, on_rows)
            finally:
                faces.result()  # also when ASR failed: never leave tracking running; raises its error
        self._score_units(media, stream.flush(), rows, on_rows)
        return media, rows

    def _stream_chunks(
        self,
        media: Media,
        stream: UnitStream,
        faces: Future[Media],
        rows: list[TimelineRow],
        on_rows: Callable[[list[TimelineRow]], None],
    ) -> None:
        """Transcribe the audio chunk by chunk and score the units each chunk completes (once the faces
        are tracked); a progress bar follows a long file."""
        from tqdm import tqdm

        audio = asr_audio(media)
        if audio is None:
            return
        total = audio.shape[0] / ASR_RATE
        show = self.progress and total > self.chunk_seconds
        with tqdm(
            total=round(total), desc=media.path.name[:30], unit="s", leave=False, disable=not show
        ) as bar:
            for s0, s1 in chunk_bounds(audio, ASR_RATE, self.chunk_seconds):
                units = stream.push(self.chunk_words(audio, s0, s1), s1 / ASR_RATE)
                if units:
                    faces.result()
                    self._score_units(media, units, rows, on_rows)
                bar.update(round(s1 / ASR_RATE) - bar.n)

    def score_file(self, path: Path, out: Path) -> InputResult:
        """Score one input into ``out``; every problem that is the input's fault becomes a reason."""
        t0 = time.perf_counter()
        key = out.name
        skip = skip_reason(path)
        if skip:
            return self._finish_bad(path, out, "skipped", skip, t0)
        for stale in (PNG_NAME, HTML_NAME):
            (out / stale).unlink(missing_ok=True)
        meta = input_meta(path, self.scorer.model_id, self.config)
        media: Media | None = None
        with TimelineWriter(out / CSV_NAME, out / JSON_NAME, meta) as writer:
            try:
                media, rows = self.stream(path, writer.append)
            except FineError as exc:
                return self._finish_bad(path, out, "failed", _without_path(str(exc), path), t0)
            notes = media_notes(media)
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
        doc = {
            "format": "fine-timeline",
            "format_version": 1,
            "status": status,
            **input_meta(path, self.scorer.model_id, self.config),
        }
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
        want = input_meta(path, self.scorer.model_id, self.config)
        doc = finished_doc(target / JSON_NAME, want) if resume else None
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


def _without_path(message: str, path: Path) -> str:
    """The summary names the input already: drop the leading 'PATH: ' of an InputError message."""
    return message.removeprefix(f"{path}: ")


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("fingerprint", "segment")}
