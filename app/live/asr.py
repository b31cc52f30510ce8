"""Streaming ASR: Silero VAD cuts the incoming audio at pauses, each chunk is transcribed once by the
same :class:`~core.features.transcribe.Transcriber` ``fine score`` uses, and its words go through the
same :class:`~app.pipeline.segment.UtteranceSegmenter`.

Push-style and clock-free (like whisper_streaming's ``OnlineASRProcessor``): :meth:`StreamingASR.advance`
is told how far the audio goes, so a file replayed as fast as possible is cut exactly as it would be
live. While speech goes on, the chunk so far can be transcribed as *tentative* text (shown, never
scored); a chunk is *committed* once, after ``cut_pause`` seconds of silence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.live.buffers import AudioBuffer
from app.live.config import AsrConfig
from app.pipeline.config import SegmentConfig
from app.pipeline.segment import SENTENCE_END, Unit, UtteranceSegmenter
from core.errors import optional_import
from core.features.text import Word
from core.features.transcribe import ASR_RATE, Transcriber

log = logging.getLogger(__name__)


def _vad() -> Any:
    vad = optional_import(
        "faster_whisper.vad", "live transcription needs faster-whisper: pip install 'fine-msa[asr]'"
    )
    return vad.VadOptions, vad.get_speech_timestamps


@dataclass
class AsrUpdate:
    words: list[Word] = field(default_factory=list)  # newly committed words
    units: list[Unit] = field(default_factory=list)  # utterances completed by them (or by a long pause)
    tentative: str | None = None  # None: unchanged; "": cleared
    speech: bool = False  # the VAD hears speech in the audio not yet committed


class StreamingASR:
    """Not thread-safe: one ASR worker owns it. Times are seconds from the start of the stream."""

    def __init__(
        self,
        transcriber: Transcriber,
        config: AsrConfig,
        segment: SegmentConfig,
        sample_rate: int = ASR_RATE,
        tentative: bool = True,
        beam_size: int = 5,
        window: float | None = None,
    ) -> None:
        self.transcriber, self.config, self.sample_rate = transcriber, config, sample_rate
        self.beam_size, self.window = beam_size, window
        self.segmenter = UtteranceSegmenter(segment)
        self.segment = segment
        self.tentative = tentative and config.tentative_every > 0
        self.head = 0  # samples analysed so far
        self.region = 0  # first sample not yet transcribed-and-committed
        self._hypothesis: list[Word] = []  # words of the last tentative pass
        self._hyp_end = 0  # sample up to which that pass heard the audio
        self._tentative_current = False  # the tentative text of the last pass is still shown
        VadOptions, self._speech = _vad()
        # the VAD ends a span after `prefetch_pause` of silence (the final pass may start then);
        # pauses shorter than `cut_pause` are merged back (speech_spans), padding is added there
        self._vad_options = VadOptions(
            threshold=config.vad_threshold,
            min_silence_duration_ms=int(config.prefetch_pause * 1000),
            speech_pad_ms=0,
            min_speech_duration_ms=150,
        )

    @property
    def floor(self) -> float:
        """Earliest stream time still needed (untranscribed audio or the utterance in progress)."""
        t = self.region / self.sample_rate - self.config.context
        pending = self.segmenter.pending
        return min(t, pending[0].start) if pending else t

    @property
    def known_until(self) -> float:
        """Stream time up to which the words are known: committed (or silence), or heard by the tentative
        pass whose text is current. Words of later audio are not transcribed yet."""
        end = max(self.region, self._hyp_end) if self._tentative_current else self.region
        return end / self.sample_rate

    def _to16k(self, x: np.ndarray) -> np.ndarray:
        if self.sample_rate == ASR_RATE or not x.size:
            return x
        n = round(x.size * ASR_RATE / self.sample_rate)
        return np.interp(np.linspace(0, x.size - 1, n), np.arange(x.size), x).astype(np.float32)

    def speech_spans(self, audio: np.ndarray) -> list[tuple[int, int]]:
        """Speech spans in samples of ``audio`` (at the stream's rate): separated by pauses of at
        least ``cut_pause``, each widened by ``pad`` on both sides (up to the middle of the pause)."""
        return self._spans(audio)[0]

    def _spans(self, audio: np.ndarray) -> tuple[list[tuple[int, int]], bool]:
        """:meth:`speech_spans`, and whether the speech stopped: the last span was followed by at least
        ``prefetch_pause`` of silence (before that, the VAD lets it run to the end of ``audio``)."""
        sr, cfg = self.sample_rate, self.config
        scale = sr / ASR_RATE
        raw = [
            (round(s["start"] * scale), round(s["end"] * scale))
            for s in self._speech(self._to16k(audio), self._vad_options)
        ]
        merged: list[tuple[int, int]] = []
        for a, b in raw:
            if merged and a - merged[-1][1] < cfg.cut_pause * sr:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        stopped = bool(merged) and merged[-1][1] < audio.size
        pad = int(cfg.pad * sr)
        spans = []
        for i, (a, b) in enumerate(merged):
            lo = (merged[i - 1][1] + a) // 2 if i else 0
            hi = (b + merged[i + 1][0]) // 2 if i + 1 < len(merged) else audio.size
            spans.append((max(lo, a - pad), min(hi, b + pad)))
        return spans, stopped

    def _transcribe_from(self, buffer: AudioBuffer, end: int) -> tuple[list[Word], str]:
        """Words of the audio from the region start to ``end``. Whisper also hears up to ``context``
        seconds before the region (already committed) so a chunk cut at a pause is not transcribed
        out of context; words whose middle lies before the region are dropped."""
        sr = self.sample_rate
        start = max(0, self.region - int(self.config.context * sr))
        audio = buffer.read(start, end)
        start = end - audio.size  # what the buffer still had
        tr = self.transcriber.transcribe(self._to16k(audio), beam_size=self.beam_size, window=self.window)
        offset, region_t = start / sr, self.region / sr
        words = [Word(w.word, w.start + offset, w.end + offset, w.probability) for w in tr.words]
        words = [w for w in words if 0.5 * (w.start + w.end) >= region_t]
        return words, " ".join(w.word for w in words)

    def _commit(
        self, buffer: AudioBuffer, cut: int, update: AsrUpdate, speech_end: int | None = None
    ) -> None:
        """Commit ``cut`` samples from the region start. When the last tentative pass already heard all
        the speech in them (up to ``speech_end``), its words are committed without transcribing again."""
        if speech_end is not None and self._hypothesis and self._hyp_end >= self.region + speech_end:
            words = self._hypothesis
        else:
            words, _ = self._transcribe_from(buffer, self.region + cut)
        self.region += cut
        self._hypothesis = []
        self._tentative_current = False
        update.words += words
        update.units += self.segmenter.push(words)
        update.tentative = ""

    def _flush_if_paused(self, now: float, next_speech: float, update: AsrUpdate) -> None:
        pending = self.segmenter.pending
        if pending and min(now, next_speech) - pending[-1].end >= self.segment.max_pause:
            update.units += self.segmenter.flush()

    def advance(self, buffer: AudioBuffer, head: int) -> AsrUpdate:
        """Look at the audio up to sample ``head``: commit a chunk that ended in a pause, else maybe
        transcribe the speech in progress as tentative text."""
        update = AsrUpdate()
        self.head = head
        sr, cfg = self.sample_rate, self.config
        pending = buffer.read(self.region, head)
        if pending.size < int(0.25 * sr):
            return update
        spans, stopped = self._spans(pending)
        start_t = self.region / sr
        if not spans:
            keep = int(0.5 * sr)  # a word may be starting in the last half second
            if pending.size > 2 * keep:
                self.region = head - keep
            self._flush_if_paused(head / sr, float("inf"), update)
            return update
        update.speech = True
        silence = pending.size - spans[-1][1]
        next_speech = start_t + spans[0][0] / sr  # the speech not committed yet starts here
        if silence >= int(cfg.cut_pause * sr):
            cut = min(spans[-1][1] + int(cfg.pad * sr), pending.size)
            self._commit(buffer, cut, update, speech_end=spans[-1][1])
            next_speech = float("inf")
        elif len(spans) > 1 or pending.size >= int(cfg.max_chunk * sr):
            # a pause (>= cut_pause: the VAD's min_silence) before the speech in progress, or too long
            cut = (spans[-2][1] + spans[-1][0]) // 2 if len(spans) > 1 else pending.size
            self._commit(buffer, cut, update)
            next_speech = self.region / sr
        elif self._tentative_due(buffer, head, pending.size - spans[0][0]) or self._prefetch_due(
            spans[-1][1], stopped
        ):
            self._tentative_pass(buffer, pending, start_t, update)
        self._flush_if_paused(head / sr, next_speech, update)
        return update

    def _tentative_due(self, buffer: AudioBuffer, head: int, speech: int) -> bool:
        """Only when caught up with the audio and ``speech`` (samples of speech in progress) is longer
        than ``tentative_after``: a pass running when a short utterance ends would delay its commit."""
        cfg, sr = self.config, self.sample_rate
        if (
            not self.tentative
            or buffer.end - head > 2 * int(cfg.hop * sr)
            or speech < cfg.tentative_after * sr
        ):
            return False
        # one pass per `tentative_every` seconds of new audio: behind the clock, passes do not pile up
        return head - self._hyp_end >= int(cfg.tentative_every * sr)

    def _prefetch_due(self, speech_end: int, stopped: bool) -> bool:
        """The speech stopped (``prefetch_pause`` of silence) and the last tentative pass did not hear
        all of it: transcribe now, while the pause that commits it (``cut_pause``) is still being
        waited for; the commit then reuses these words instead of a pass of its own. If the speaker
        goes on, the pass was just one more tentative pass."""
        if not self.tentative or not stopped:
            return False
        return not (self._hypothesis and self._hyp_end >= self.region + speech_end)

    def _tentative_pass(
        self, buffer: AudioBuffer, pending: np.ndarray, start_t: float, update: AsrUpdate
    ) -> None:
        """Transcribe the speech in progress. Whole sentences that two passes in a row agree on, with
        more speech after them, are committed (:func:`_agreed_sentences`), so a sentence does not wait
        for the pause that ends the whole turn."""
        words, text = self._transcribe_from(buffer, self.region + pending.size)
        agreed = _agreed_sentences(self._hypothesis, words)
        self._hypothesis, self._hyp_end = words, self.region + pending.size
        self._tentative_current = True
        update.tentative = text
        if not agreed:
            return
        cut_t = 0.5 * (agreed[-1].end + words[len(agreed)].start)
        self.region = max(self.region, min(int(cut_t * self.sample_rate), buffer.end))
        self._hypothesis = []
        update.words += agreed
        update.units += self.segmenter.push(agreed)
        update.tentative = " ".join(w.word for w in words[len(agreed) :])

    def finish(self, buffer: AudioBuffer) -> AsrUpdate:
        """End of stream: commit whatever speech is left and end the utterance in progress."""
        update = AsrUpdate()
        pending = buffer.read(self.region, buffer.end)
        spans = self.speech_spans(pending) if pending.size >= int(0.1 * self.sample_rate) else []
        if spans:
            self._commit(buffer, pending.size, update, speech_end=spans[-1][1])
        update.units += self.segmenter.flush()
        update.tentative = ""
        self._tentative_current = False
        self.region = max(self.region, buffer.end)  # every word is known now
        return update


def _agreed_sentences(previous: list[Word], current: list[Word]) -> list[Word]:
    """The whole sentences at the start of ``current`` that ``previous`` starts with too (two passes
    agree, whisper_streaming's local agreement) and that are followed by at least one more word.
    One pass is not enough: Whisper often ends a sentence early and rewrites it once it hears more."""
    same = 0
    for a, b in zip(previous, current):
        if a.word.strip().lower() != b.word.strip().lower():
            break
        same += 1
    ends = [i for i in range(min(same, len(current) - 1)) if current[i].word.endswith(SENTENCE_END)]
    return current[: ends[-1] + 1] if ends else []
