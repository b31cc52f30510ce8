"""The live session: sources -> capture threads -> buffers -> vision, ASR and scoring workers -> rows.

Threads (docs/ARCHITECTURE.md, "Threads in the live app"):

- ``video``: reads the video source, keeps the latest frame for the preview and hands frames on the
  face-tracking grid to a bounded queue (real time: the oldest waiting frame is dropped; fast replay:
  it waits, so nothing is lost). ``audio``: appends to the :class:`AudioBuffer` and tracks the level.
  Neither ever waits for inference.
- ``vision``: FaceMesh on queued frames -> :class:`VisionTrack` (landmarks for the preview, features on
  the model's frame grid). ``asr``: :class:`StreamingASR` on the audio buffer -> committed words and
  utterances. ``scoring``: scores each committed utterance, and in real time the last ``live_window``
  seconds every ``1/live_hz`` seconds.

Every stage is supervised: a source that raises or stalls is reported (``on_error``), its modality is
absent, and it is reopened with backoff while the rest goes on.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from app.live.asr import AsrUpdate, StreamingASR
from app.live.buffers import AudioBuffer, Expression, FaceResult, VisionTrack
from app.live.config import LiveConfig
from app.live.sources import AudioSource, SessionClock, SourceEnded, SourceError, VideoFrame, VideoSource
from app.live.supervise import RateMeter, StageState, Supervisor
from app.pipeline.scorer import Scorer
from app.pipeline.segment import Unit
from app.pipeline.timeline import TimelineRow
from core.features.decode import FrameSampler
from core.features.text import Word
from core.features.transcribe import Transcriber

log = logging.getLogger(__name__)

_END = object()  # end of a queue's stream


@dataclass
class LiveEvents:
    """Callbacks, called from worker threads (the GUI turns them into Qt signals)."""

    on_row: Callable[[TimelineRow], None] | None = None  # a committed utterance, scored
    on_live: Callable[[TimelineRow], None] | None = None  # the rolling score of the last seconds
    on_transcript: Callable[[str, str], None] | None = None  # (newly committed words, tentative text)
    on_error: Callable[[str, str], None] | None = None  # (stage, one-line message)
    on_finished: Callable[[], None] | None = None  # every source ended and everything was scored


class Recorder(Protocol):
    """What a session writes as it goes (:class:`app.live.record.SessionRecorder`)."""

    def on_row(self, row: TimelineRow) -> None: ...
    def on_audio(self, samples: np.ndarray, sample_rate: int) -> None: ...
    def on_frame(self, frame: VideoFrame) -> None: ...
    def close(self, status: str) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    """What the GUI polls: the newest frame and face, levels, modality states and rates."""

    frame: VideoFrame | None
    face: FaceResult | None
    level_db: float
    states: dict[str, str]  # modality -> present | idle | absent
    stages: dict[str, StageState]
    preview_fps: float
    vision_fps: float
    latency: float | None  # end of the last utterance -> its score (real time only)
    stream_time: float
    tentative: str


@dataclass
class LatencyRecord:
    end: float  # utterance end, stream seconds
    scored_at: float  # stream seconds when its row was ready
    asr_at: float  # stream seconds when its words were committed

    @property
    def latency(self) -> float:
        return self.scored_at - self.end


@dataclass
class _Pending:
    unit: Unit
    committed_at: float


class LiveSession:
    """One run from start to stop. ``video``/``audio`` may be None (no camera / no microphone)."""

    def __init__(
        self,
        scorer: Scorer,
        video: VideoSource | None,
        audio: AudioSource | None,
        config: LiveConfig | None = None,
        events: LiveEvents | None = None,
        transcriber: Transcriber | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.scorer, self.video, self.audio = scorer, video, audio
        self.config = config or LiveConfig()
        self.events = events or LiveEvents()
        self.recorder = recorder
        cfg = self.config
        self.clock = SessionClock(cfg.realtime)
        self.sample_rate = scorer.sample_rate
        self.transcriber = transcriber or Transcriber(cfg.whisper_model, cfg.language, cfg.asr_threads)
        # real time: greedy passes over a 15 s encoder window; --fast: what `fine score` does
        beam = cfg.asr.beam_size or (1 if cfg.realtime else 5)
        window = cfg.asr.window or (15.0 if cfg.realtime else None)
        self.asr = StreamingASR(
            self.transcriber,
            cfg.asr,
            cfg.segment,
            self.sample_rate,
            cfg.realtime,
            beam,
            window,
        )
        self.audio_buffer = AudioBuffer(self.sample_rate, cfg.audio_buffer, block=not cfg.realtime)
        self.vision_track = VisionTrack()
        self._frames: queue.Queue[object] = queue.Queue(maxsize=cfg.video_queue if cfg.realtime else 8)
        self._units: queue.Queue[object] = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.supervisor = Supervisor(self._stop, self._report, cfg.retry_min, cfg.retry_max)
        model_fps = scorer.extractors.config.vision.fps
        self._model_fps = model_fps
        self._track_sampler = FrameSampler(cfg.track_fps if cfg.realtime and cfg.track_fps else model_fps)
        self.rows: list[TimelineRow] = []
        self.live_rows: list[TimelineRow] = []
        self.latencies: list[LatencyRecord] = []
        self.dropped_frames = 0
        self.vision_busy = 0.0  # seconds spent in FaceMesh + features (the vision stage's capacity)
        self.preview_meter, self.vision_meter = RateMeter(), RateMeter()
        self._latest: VideoFrame | None = None
        self._level_db = -120.0
        self._words: list[Word] = []
        self._tentative = ""
        self._known_until = 0.0  # stream time up to which the words are known (the ASR's text head)
        self._speech = False
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._video_ended = self.video is None
        self._audio_done = self.audio is None
        self._vision_done = self.video is None
        self._started = False
        # a device is ok from a successful open until it fails or ends (not while a reopen is tried)
        self._device_ok = {"video": False, "audio": False}

    # ------------------------------------------------------------------------------ lifecycle
    def warm_up(self) -> None:
        """Load Whisper, the VAD, FaceMesh and the text encoder now (seconds), not on first use."""
        if self.audio is not None:
            self.transcriber.warm_up()
            self.asr.speech_spans(np.zeros(self.sample_rate // 2, dtype=np.float32))
            self.scorer.extractors.audio.warm_up()
        if self.video is not None:
            self.scorer.extractors.vision.reset()
            self.scorer.extractors.vision.track(np.zeros((96, 96, 3), dtype=np.uint8))
        self.scorer.features(None, None, "warm up")

    def start(self) -> None:
        """Warm the models up, then start the clock and the threads (returns at once after that)."""
        assert not self._started, "a LiveSession runs once; make a new one"
        self.warm_up()
        self._started = True
        self.clock.start()
        sup = self.supervisor
        if self.video is not None:
            sup.spawn("video", self._video_body, self._video_failed)
            sup.spawn("vision", self._vision_body)
        if self.audio is not None:
            sup.spawn("audio", self._audio_body, self._audio_failed)
            sup.spawn("asr", self._asr_body)
        sup.spawn("scoring", self._score_body)
        self._check_finished()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread (an ASR call in progress is waited for) and close the recorder."""
        self._stop.set()
        self.audio_buffer.close()
        stuck = self.supervisor.join(timeout)
        if stuck:
            log.warning("threads still busy after %.0f s: %s", timeout, ", ".join(stuck))
        if self.recorder is not None:
            self.recorder.close("complete" if self.finished.is_set() else "stopped")
            self.recorder = None

    @property
    def running(self) -> bool:
        return self._started and not self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every source ended and everything was scored (a file replay)."""
        return self.finished.wait(timeout)

    # ------------------------------------------------------------------------------ reporting
    def _report(self, stage: str, message: str) -> None:
        if self.events.on_error is not None:
            self.events.on_error(stage, message)

    def _check_finished(self) -> None:
        """Finished: the audio was transcribed and scored to its end, and the video ended too (or is
        failing: a replay whose video broke still finishes)."""
        video = self.supervisor.stages.get("video")
        video_done = self._vision_done or (video is not None and video.state == "retrying")
        if self._audio_done and video_done and not self.finished.is_set():
            self.finished.set()
            if self.events.on_finished is not None:
                self.events.on_finished()

    def snapshot(self) -> Snapshot:
        lat = self.latencies[-1].latency if self.latencies and self.config.realtime else None
        return Snapshot(
            frame=self._latest,
            face=self.vision_track.latest,
            level_db=self._level_db,
            states=self.modality_states(),
            stages={k: replace(v) for k, v in self.supervisor.stages.items()},
            preview_fps=self.preview_meter.rate(),
            vision_fps=self.vision_meter.rate(),
            latency=lat,
            stream_time=self.clock.now(),
            tentative=self._tentative,
        )

    def _stage_ok(self, name: str) -> bool:
        st = self.supervisor.stages.get(name)
        return st is not None and st.state in ("running", "ended")

    def modality_states(self) -> dict[str, str]:
        """present (seen/heard now), idle (device fine, nothing detected) or absent (no device or failed)."""
        states = {}
        if self.video is None or not (self._device_ok["video"] and self._stage_ok("vision")):
            states["vision"] = "absent"
        else:
            face, frame = self.vision_track.latest, self._latest
            recent = face is not None and (frame is None or frame.time - face.time < 1.0)
            states["vision"] = "present" if recent and face is not None and face.face is not None else "idle"
        if self.audio is None or not self._device_ok["audio"]:
            states["audio"] = states["text"] = "absent"
            return states
        states["audio"] = "present" if self._level_db > -45.0 else "idle"
        if not self._stage_ok("asr"):
            states["text"] = "absent"
        else:
            head = self.asr.head / self.sample_rate
            recent = bool(self._words) and head - self._words[-1].end < 3.0
            states["text"] = "present" if recent or self._tentative else "idle"
        return states

    # ------------------------------------------------------------------------------ video
    def _video_body(self) -> None:
        src, cfg = self.video, self.config
        assert src is not None
        src.open(self.clock, self._stop)
        self._device_ok["video"] = True
        self.vision_track.set_done(False)
        self._vision_done = False
        try:
            idle = 0.0
            while not self._stop.is_set():
                frame = src.read(timeout=0.5)
                if frame is None:
                    idle += 0.5  # read() waited (about) its timeout
                    if idle >= cfg.stall_timeout and not self._stop.is_set():
                        raise SourceError(f"{src.name}: no frames for {cfg.stall_timeout:.0f} s")
                    continue
                idle = 0.0
                self._latest = frame
                self.preview_meter.tick()
                if self.recorder is not None:
                    self.recorder.on_frame(frame)
                if self._track_sampler.take(frame.time):
                    self._enqueue_frame(frame)
        except SourceEnded:
            self._video_ended = True
            self._put(self._frames, _END)
        finally:
            src.close()

    def _video_failed(self) -> None:
        self._device_ok["video"] = False
        self._latest = None
        self._put(self._frames, _END)  # the vision worker marks vision done: nothing waits for it
        self._check_finished()

    def _enqueue_frame(self, frame: VideoFrame) -> None:
        if not self.config.realtime:
            self._put(self._frames, frame)
            return
        while True:
            try:
                self._frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self._frames.get_nowait()  # stale: the newest frame matters
                    self.dropped_frames += 1
                except queue.Empty:
                    pass

    def _put(self, q: queue.Queue[object], item: object) -> None:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _vision_body(self) -> None:
        ex = self.scorer.extractors.vision  # its FaceMesh was created by warm_up()
        grid = FrameSampler(self._model_fps)
        try:
            while not self._stop.is_set():
                try:
                    item = self._frames.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is _END:  # keep FaceMesh (seconds to create): it re-detects a face anyway
                    self.vision_track.set_done(True)
                    if self._video_ended:
                        self._vision_done = True
                        self._check_finished()
                    continue
                assert isinstance(item, VideoFrame)
                t0 = time.perf_counter()
                face = ex.track(item.rgb)
                feats, expr = (None, None) if face is None else ex.face_features(item.rgb, face)
                self.vision_busy += time.perf_counter() - t0
                h, w = item.rgb.shape[:2]
                reading = None if expr is None else Expression(*expr.top(0), float(expr.valence[0]))
                self.vision_track.add(
                    FaceResult(item.time, feats, grid.take(item.time), face, (w, h), reading)
                )
                self.vision_track.mark_seen(grid.next_tick - 1e-6)  # no earlier grid frame is coming
                self.vision_meter.tick()
        finally:
            ex.reset()

    # ------------------------------------------------------------------------------ audio
    def _audio_body(self) -> None:
        src, cfg, buf = self.audio, self.config, self.audio_buffer
        assert src is not None
        src.open(self.clock, self._stop)
        self._device_ok["audio"] = True
        if cfg.realtime:  # keep stream time = sample time across a reconnect: silence for the gap
            gap = int(self.clock.now() * self.sample_rate) - buf.end
            if gap > self.sample_rate // 10:
                buf.write(np.zeros(gap, dtype=np.float32), self._stop)
        try:
            idle = 0.0
            while not self._stop.is_set():
                x = src.read(timeout=0.5)
                if x is None:
                    idle += 0.5
                    if idle >= cfg.stall_timeout and not self._stop.is_set():
                        raise SourceError(f"{src.name}: no audio for {cfg.stall_timeout:.0f} s")
                    continue
                idle = 0.0
                buf.write(x, self._stop)
                rms = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
                self._level_db = 20 * math.log10(max(rms, 1e-6))
                if self.recorder is not None:
                    self.recorder.on_audio(x, self.sample_rate)
        except SourceEnded:
            buf.close()
        finally:
            src.close()

    def _audio_failed(self) -> None:
        self._device_ok["audio"] = False
        self._level_db = -120.0
        self._speech = False

    def _asr_body(self) -> None:
        asr, buf, sr = self.asr, self.audio_buffer, self.sample_rate
        hop = max(1, int(self.config.asr.hop * sr))
        while not self._stop.is_set():
            target = asr.head + hop
            if not buf.wait_for(target, 0.5):
                if buf.closed and not self._stop.is_set():
                    if buf.end > asr.head:  # the last piece: no tentative pass, finish() commits it
                        asr.tentative = False
                        self._handle_asr(asr.advance(buf, buf.end))
                    self._handle_asr(asr.finish(buf))
                    self._put(self._units, _END)
                    return
                continue
            self._handle_asr(asr.advance(buf, target))
            with self._lock:
                floor = min([asr.floor, *(p.unit.start for p in self._pending)])
            keep = self.config.live_window if self.config.realtime else 0.0
            buf.trim(int((min(floor, target / sr - keep) - 1.0) * sr))

    def _handle_asr(self, upd: AsrUpdate) -> None:
        now = self.clock.now()
        self._speech = upd.speech
        self._known_until = self.asr.known_until
        if upd.words:
            self._words = [w for w in self._words if w.end > upd.words[0].start - 60.0] + upd.words
        if upd.tentative is not None:
            self._tentative = upd.tentative
        if (upd.words or upd.tentative is not None) and self.events.on_transcript is not None:
            self.events.on_transcript(" ".join(w.word for w in upd.words), self._tentative)
        for u in upd.units:
            with self._lock:
                self._pending.append(_Pending(u, now))
            self._put(self._units, u)

    # ------------------------------------------------------------------------------ scoring
    def _score_body(self) -> None:
        cfg = self.config
        period = 1.0 / cfg.live_hz if cfg.realtime and cfg.live_hz > 0 else None
        next_tick = self.clock.now() + (period or 0.0)
        while not self._stop.is_set():
            timeout = max(0.0, next_tick - self.clock.now()) if period else 0.5
            try:
                item = self._units.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _END:
                self._audio_done = True
                self._check_finished()
                period = None  # the audio ended: nothing new to score
                continue
            if isinstance(item, Unit):
                self._score_unit(item)
            if period and self.clock.now() >= next_tick:
                self._score_live()
                next_tick = max(next_tick + period, self.clock.now())

    def _vision_rows(self, t0: float, t1: float, wait: float | None) -> np.ndarray | None:
        if self.video is None:
            return None
        self.vision_track.wait_until(t1, wait)
        return self.vision_track.rows(t0, t1)

    def _score_unit(self, u: Unit) -> None:
        sr = self.sample_rate
        vis = self._vision_rows(u.start, u.end, 0.5 if self.config.realtime else None)
        audio = None
        if self.audio is not None:
            audio = self.audio_buffer.read(round(u.start * sr), round(u.end * sr))
        feats = self.scorer.features(audio, vis, u.text)
        row = self.scorer.score([u], [feats], first_index=len(self.rows))[0]
        now = self.clock.now()
        with self._lock:
            pend = next((p for p in self._pending if p.unit is u), None)
            if pend is not None:
                self._pending.remove(pend)
        self.rows.append(row)
        self.latencies.append(LatencyRecord(u.end, now, pend.committed_at if pend else now))
        if self.recorder is not None:
            self.recorder.on_row(row)
        if self.events.on_row is not None:
            self.events.on_row(row)

    def _score_live(self) -> None:
        now = self.clock.now()
        t0, sr = max(0.0, now - self.config.live_window), self.sample_rate
        audio = None
        if self.audio is not None and self._device_ok["audio"]:
            audio = self.audio_buffer.read(int(t0 * sr), int(now * sr))
        vis = self.vision_track.rows(t0, now) if self._device_ok["video"] else None
        words: tuple[Word, ...] = ()
        if self.audio is not None and self._stage_ok("asr"):
            words = window_words(
                self._words, self._tentative, self._known_until, now, self.config.live_window
            )
            if not words and self._speech:
                return  # speech whose words are not transcribed yet: no score without them
        unit = Unit(t0, now, words, kind="live")
        row = self.scorer.score([unit], [self.scorer.features(audio, vis, unit.text)], len(self.live_rows))[0]
        self.live_rows.append(row)
        if self.events.on_live is not None:
            self.events.on_live(row)


def window_words(
    committed: list[Word], tentative: str, known_until: float, now: float, window: float
) -> tuple[Word, ...]:
    """The words of the rolling score: those of the last ``window`` seconds *that are transcribed*.

    The ASR commits words seconds after they are spoken (a pause must end the chunk, then Whisper runs),
    so the last ``window`` seconds of audio usually have no committed words yet. Scoring them with text
    absent gave a score with the voice and face only, far from the utterances being spoken (on the demo
    about -0.9 under sentences scored +0.5 and +0.6). So the words are those of the ``window`` seconds up
    to the ASR's text head ``known_until`` (committed words, then the tentative text of the speech in
    progress), while the voice and face are those of the last ``window`` seconds: the words lag the
    live modalities by the ASR latency, never absent while there is speech. Silence that the ASR has
    looked at moves ``known_until`` on, so after a pause of ``window`` seconds there are no words."""
    anchor = min(now, known_until)
    words = tuple(w for w in committed if w.end > anchor - window)
    if tentative:
        words += (Word(tentative, anchor, anchor),)
    return words
