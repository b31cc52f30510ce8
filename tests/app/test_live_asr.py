"""StreamingASR's pass scheduling on real speech (the real Silero VAD) with a fake Whisper that counts its
passes: when speech stops, the final pass starts before the pause that commits it ends, and the commit
reuses its words instead of a pass of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from app.live.buffers import AudioBuffer
from app.live.config import AsrConfig
from app.pipeline.config import SegmentConfig
from core.config import ConfigError
from core.features.text import Transcript, Word

SR = 16000
HOP = 1600  # AsrConfig().hop


@dataclass
class FakeTranscriber:
    """One word per half second of the audio it is given (so every pass hears what it is given)."""

    calls: list[tuple[float, float | None]] = field(default_factory=list)  # (seconds, window)

    def transcribe(self, audio: np.ndarray, beam_size: int = 5, window: float | None = None) -> Transcript:
        seconds = audio.size / SR
        self.calls.append((seconds, window))
        words = [Word(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(int(seconds / 0.5))]
        return Transcript(" ".join(w.word for w in words), words)


@dataclass
class Step:
    head: int
    passes: int  # transcriber calls during this advance()
    committed: list[Word]


def _speech(samples_dir: Path, first: bool = False) -> np.ndarray:
    """'I am so disappointed. This was the worst movie...' (espeak-ng), cut to its speech (``first``:
    to the speech before its first pause, 'I am so disappointed.')."""
    pytest.importorskip("faster_whisper")
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from core.features.decode import load_audio

    x = load_audio(samples_dir / "tts_negative_en.wav", SR)
    spans = get_speech_timestamps(x, VadOptions(speech_pad_ms=0, min_silence_duration_ms=150))
    return x[spans[0]["start"] : spans[0 if first else -1]["end"]]


def _replay(
    x: np.ndarray, tentative: bool, window: float | None = 10.0
) -> tuple[FakeTranscriber, list[Step]]:
    """Feed ``x`` hop by hop, caught up with the audio as in real time."""
    from app.live.asr import StreamingASR

    fake = FakeTranscriber()
    asr = StreamingASR(fake, AsrConfig(), SegmentConfig(), SR, tentative, 1, window)  # type: ignore[arg-type]
    buf = AudioBuffer(SR, 60.0, block=False)
    steps = []
    for head in range(HOP, x.size + 1, HOP):
        buf.write(x[head - HOP : head])
        before = len(fake.calls)
        upd = asr.advance(buf, head)
        steps.append(Step(head, len(fake.calls) - before, upd.words))
    return fake, steps


def test_pause_commits_the_prefetched_pass_without_another(samples_dir: Path) -> None:
    speech = _speech(samples_dir)
    x = np.concatenate([speech, np.zeros(SR, dtype=np.float32)])
    fake, steps = _replay(x, tentative=True)
    cfg = AsrConfig()
    commit = [s for s in steps if s.committed][-1]
    assert commit.head > speech.size - HOP  # the end of the speech, committed after its pause
    passes = [s.head for s in steps if s.passes]
    *periodic, prefetch = passes
    assert commit.passes == 0  # its words come from a pass that already heard the whole speech
    assert prefetch - periodic[-1] < cfg.tentative_every * SR  # off the 1.5 s schedule: the pause started it
    assert commit.head - prefetch >= (cfg.cut_pause - cfg.prefetch_pause) * SR - 1  # that much earlier
    assert abs(prefetch - speech.size) < 0.4 * SR  # just after the speech stopped
    assert commit.committed[-1].word == f"w{int(fake.calls[-1][0] / 0.5) - 1}"  # that pass's last word
    assert {w for _, w in fake.calls} == {10.0}  # the encoder window reaches every pass
    assert sum(s.passes for s in steps) == len(fake.calls)


def test_without_tentative_passes_the_commit_transcribes_once(samples_dir: Path) -> None:
    speech = _speech(samples_dir)
    x = np.concatenate([speech, np.zeros(SR, dtype=np.float32)])
    fake, steps = _replay(x, tentative=False, window=None)
    passes = [s for s in steps if s.passes]
    assert len(passes) == 2  # one per chunk: the sentences' pause is a cut (fast replay / --fast)
    assert all(s.passes == 1 and s.committed for s in passes)
    cfg = AsrConfig()
    assert passes[-1].head - speech.size >= (cfg.cut_pause + cfg.pad) * SR  # after the whole pause
    assert {w for _, w in fake.calls} == {None}  # Whisper's own 30 s window


def test_a_short_pause_is_not_a_cut(samples_dir: Path) -> None:
    """A pause shorter than cut_pause may start a pass (prefetch) but commits nothing: the speech
    goes on in the same chunk."""
    speech = _speech(samples_dir, first=True)
    gap = np.zeros(int(0.18 * SR), dtype=np.float32)
    x = np.concatenate([speech, gap, speech, np.zeros(SR, dtype=np.float32)])
    _, steps = _replay(x, tentative=True)
    commits = [s for s in steps if s.committed]
    assert commits and all(s.head > 2 * speech.size + gap.size for s in commits)


def test_prefetch_pause_is_checked() -> None:
    with pytest.raises(ConfigError, match="prefetch_pause"):
        AsrConfig(prefetch_pause=0.3)  # longer than cut_pause
    with pytest.raises(ConfigError, match="prefetch_pause"):
        AsrConfig(prefetch_pause=0.1, pad=0.1)  # the pass would not hear the padded speech
    with pytest.raises(ConfigError, match="window"):
        AsrConfig(window=5.0)
