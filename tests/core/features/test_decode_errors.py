"""Acceptance 6: corrupt file, no audio track, no video track, unreadable path -> one line or absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from core.features.decode import decode_audio, iter_video_frames, probe
from tests.media import corrupt_copy, make_clip

pytest.importorskip("av")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    src = samples_dir / "face_smiling_plus_tts_positive.mp4"
    return {
        "no_audio": make_clip(d / "no_audio.mp4", src, None, duration=2.0),
        "no_video": make_clip(d / "no_video.mp4", None, src, duration=2.0),
        "corrupt": corrupt_copy(src, d / "corrupt.mp4"),
        "garbage": _write(
            d / "garbage.mp4", np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        ),
        "empty": _write(d / "empty.mp4", b""),
        "dir": d,
        "missing": d / "does_not_exist.mp4",
    }


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def test_tracks_that_are_missing_are_reported_not_raised(media: dict[str, Path]) -> None:
    info = probe(media["no_audio"])
    assert info.has_video and not info.has_audio and info.width == 640
    assert decode_audio(media["no_audio"]) is None
    assert len(list(iter_video_frames(media["no_audio"], fps=5))) == 10
    info = probe(media["no_video"])
    assert info.has_audio and not info.has_video
    audio = decode_audio(media["no_video"])
    assert audio is not None and abs(audio.size - 32000) < 2048
    assert list(iter_video_frames(media["no_video"], fps=5)) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("corrupt", "cannot open as audio/video"),
        ("garbage", "cannot open as audio/video"),
        ("empty", "file is empty"),
        ("dir", "is a directory"),
        ("missing", "no such file"),
    ],
)
def test_unusable_files_raise_one_line(media: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        probe(media[name])
    assert message in str(err.value) and str(media[name]) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path, samples_dir: Path) -> None:
    p = tmp_path / "locked.flac"
    p.write_bytes((samples_dir / "jfk.flac").read_bytes())
    p.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        decode_audio(p)


def test_cli_extract_gives_absent_modalities_or_one_line(
    media: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from training.featcache import main

    assert main(["extract", str(media["no_audio"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["presence"] == {"text": False, "audio": False, "vision": True}
    assert out["audio"] is None and out["vision"] == [10, 60] and out["faces"] == 10
    assert main(["extract", str(media["no_video"]), "--text", "I loved it"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["presence"] == {"text": True, "audio": True, "vision": False} and out["vision"] is None
    for name in ("corrupt", "missing", "dir"):
        assert main(["extract", str(media[name])]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fine features: ") and err.count("\n") == 1 and "Traceback" not in err


def test_no_face_video_marks_vision_absent(samples_dir: Path) -> None:
    from core.features.clip import FeatureExtractors

    feats = FeatureExtractors().extract_clip(samples_dir / "no_face.mp4", text="")
    assert feats.presence["vision"] is False
    assert feats.vision is not None and feats.vision_present is not None and not feats.vision_present.any()
    assert feats.presence["audio"] is True  # the title card has a soundtrack


@pytest.mark.parametrize(
    ("blocked", "call", "hint"),
    [
        ("av", "core.features.decode:require_av", "fine-msa[features]"),
        ("mediapipe.python.solutions", "core.features.vision:_mediapipe", "fine-msa[features]"),
        ("faster_whisper", "core.features.transcribe:Transcriber", "fine-msa[asr]"),
        ("transformers", "core.text_encoder:_transformers", "fine-msa[text]"),
    ],
)
def test_missing_optional_packages_give_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, blocked: str, call: str, hint: str
) -> None:
    import importlib
    import sys

    from core.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` raise ImportError
    # a Whisper model an earlier test loaded is reused without importing faster_whisper: start empty
    monkeypatch.setattr("core.features.transcribe._MODELS", {})
    module, name = call.split(":")
    fn = getattr(importlib.import_module(module), name)
    with pytest.raises(MissingDependencyError) as err:
        fn()._load() if name == "Transcriber" else fn()
    assert f"pip install '{hint}'" in str(err.value)


def test_cli_prints_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], samples_dir: Path
) -> None:
    import sys

    from training.featcache import main

    monkeypatch.setitem(sys.modules, "av", None)
    assert main(["extract", str(samples_dir / "single_face.mp4")]) == 2
    err = capsys.readouterr().err
    assert err == "fine features: decoding audio/video files needs PyAV: pip install 'fine-msa[features]'\n"


def test_frame_sampler_gives_the_same_grid_at_any_native_rate() -> None:
    from core.features.decode import FrameSampler

    def kept(native: float, fps: float, seconds: float = 2.0) -> list[float]:
        s = FrameSampler(fps)
        return [round(i / native, 3) for i in range(int(seconds * native)) if s.take(i / native)]

    assert kept(30, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert len(kept(25, 5)) == len(kept(60, 5)) == len(kept(23.976, 5)) == 10
    assert len(kept(30, 60)) == 60  # asking for more than the native rate keeps every frame once
    assert len(kept(30, None)) == 60  # type: ignore[arg-type]
