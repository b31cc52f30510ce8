"""Settings of the live engine (one frozen, validated dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.pipeline.config import SegmentConfig
from core.errors import check
from core.packaged import PACKAGED_TINY_EN


@dataclass(frozen=True)
class AsrConfig:
    """Streaming ASR: Silero VAD cuts the audio at pauses; each cut chunk is transcribed once.

    hop: seconds of new audio between VAD looks. cut_pause: silence after speech that ends a chunk.
    prefetch_pause: silence after speech that starts the chunk's final Whisper pass in real time,
    before ``cut_pause`` is reached (the commit reuses its words; speech that goes on wastes a pass).
    max_chunk: a chunk longer than this is cut at its last pause (or forced). tentative_every: seconds
    between tentative transcriptions of the speech in progress (0 = none), once it is longer than
    tentative_after seconds. beam_size: Whisper's beam; ``None`` means 1 in real time (greedy decoding,
    about twice as fast: the end-of-utterance latency is mostly Whisper passes) and 5 in ``--fast``
    replays (faster-whisper's default, what ``fine score`` uses, so the two agree). window: seconds of
    audio Whisper's encoder sees per pass (the chunk and its context, padded); ``None`` means 15 in
    real time (a pass costs about 40% of a 30 s one; 10 s was cheaper still but misheard more words
    when the 5 s of context began mid-sentence) and Whisper's own 30 in ``--fast`` replays.
    """

    hop: float = 0.1
    cut_pause: float = 0.25
    prefetch_pause: float = 0.15
    pad: float = 0.1
    max_chunk: float = 12.0
    tentative_every: float = 1.5
    tentative_after: float = 2.0
    vad_threshold: float = 0.5
    context: float = 5.0
    beam_size: int | None = None
    window: float | None = None

    def __post_init__(self) -> None:
        check(0 < self.hop <= 2, f"asr.hop must be in (0, 2] seconds, got {self.hop}")
        check(0.1 <= self.cut_pause <= 5, f"asr.cut_pause must be in [0.1, 5] s, got {self.cut_pause}")
        check(0 <= self.pad < self.cut_pause, "asr.pad must be in [0, cut_pause)")
        check(
            self.pad < self.prefetch_pause <= self.cut_pause,
            "asr.prefetch_pause must be in (pad, cut_pause]: the pass must hear the padded speech",
        )
        check(self.max_chunk >= 2, f"asr.max_chunk must be >= 2 seconds, got {self.max_chunk}")
        check(self.tentative_every >= 0, "asr.tentative_every must be >= 0")
        check(self.tentative_after >= 0, "asr.tentative_after must be >= 0")
        check(0 < self.vad_threshold < 1, "asr.vad_threshold must be in (0, 1)")
        check(0 <= self.context <= 25, f"asr.context must be in [0, 25] seconds, got {self.context}")
        check(self.beam_size is None or 1 <= self.beam_size <= 10, "asr.beam_size must be in [1, 10]")
        check(
            self.window is None or 8 <= self.window <= 30,
            f"asr.window must be in [8, 30] seconds (shorter ones make Whisper repeat itself), got {self.window}",
        )


@dataclass(frozen=True)
class LiveConfig:
    """Everything a live session needs besides its sources and model.

    realtime: sources are paced by the wall clock and stale frames are dropped; False (``--fast``):
    a file is replayed as fast as the pipeline goes, nothing is dropped (results match ``fine score``).
    track_fps: frames per second FaceMesh tracks for the preview's landmarks in real time (the model
    still gets features on its profile's frame grid); None: only the model's grid.
    live_hz: rate of the rolling score over the last ``live_window`` seconds (0: none).
    """

    realtime: bool = True
    whisper_model: str = PACKAGED_TINY_EN
    language: str | None = "en"
    threads: int = 1  # the model runner's
    asr_threads: int = 2  # faster-whisper's (CTranslate2 releases the GIL)
    backend: str = "auto"
    track_fps: float | None = 10.0
    live_hz: float = 2.0
    live_window: float = 4.0
    audio_buffer: float = 60.0
    video_queue: int = 2
    stall_timeout: float = 2.0
    retry_min: float = 0.5
    retry_max: float = 5.0
    asr: AsrConfig = field(default_factory=AsrConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    def __post_init__(self) -> None:
        check(1 <= self.threads <= 64, f"threads must be in [1, 64], got {self.threads}")
        check(1 <= self.asr_threads <= 64, f"asr_threads must be in [1, 64], got {self.asr_threads}")
        check(self.track_fps is None or 0 < self.track_fps <= 60, "track_fps must be in (0, 60]")
        check(0 <= self.live_hz <= 30, f"live_hz must be in [0, 30], got {self.live_hz}")
        check(self.live_window > 0.5, f"live_window must be > 0.5 s, got {self.live_window}")
        check(self.audio_buffer >= 2 * self.asr.max_chunk, "audio_buffer must hold two ASR chunks")
        check(1 <= self.video_queue <= 64, "video_queue must be in [1, 64]")
        check(self.stall_timeout > 0, "stall_timeout must be > 0")
        check(0 < self.retry_min <= self.retry_max, "need 0 < retry_min <= retry_max")
