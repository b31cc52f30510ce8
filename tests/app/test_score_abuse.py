"""``fine score`` under abuse (issue 16): concurrent runs, links planted in --out, odd names, exit codes,
determinism, partial files, hidden files, unwritable per-input folders. Real processes, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.pipeline.timeline import CSV_COLUMNS, read_csv_rows

REPO = Path(__file__).resolve().parents[2]


def fine_score_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "app.cli", "score", *map(str, args), "--no-progress", "--threads", "1"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def summary_by_name(out: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in json.loads((out / "summary.json").read_text())["inputs"]}


@pytest.fixture(scope="module")
def abused(samples_dir: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real ``fine score`` process over a folder of awkward inputs, into an --out with planted links."""
    tmp = tmp_path_factory.mktemp("abuse")
    src, out = tmp / "in", tmp / "out"
    src.mkdir()
    shutil.copy(samples_dir / "tts_negative_en.wav", src / "sales_$5_$10.wav")
    shutil.copy(samples_dir / "jfk.flac", src / "jfk.flac")
    shutil.copy(samples_dir / "tts_positive_en.wav", src / "a_blocked.wav")
    shutil.copy(samples_dir / "tts_positive_en.wav", src / "linked.wav")
    jfk = (samples_dir / "jfk.flac").read_bytes()
    (src / "cut.flac").write_bytes(jfk[: len(jfk) // 2])  # breaks off mid-stream: FLAC decoding errors there
    (src / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    (src / ".hidden.wav").write_bytes(b"x")
    (src / ".cache").mkdir()
    (src / ".cache" / "x.wav").write_bytes(b"x")
    (src / "gone.wav").symlink_to(tmp / "nowhere.wav")
    # planted in --out: a CSV link to a file outside, a linked per-input folder, a summary link
    victim, victim2, elsewhere = tmp / "victim.txt", tmp / "victim2.txt", tmp / "elsewhere"
    victim.write_text("precious\n")
    victim2.write_text("precious too\n")
    elsewhere.mkdir()
    (out / "jfk_flac").mkdir(parents=True)
    (out / "jfk_flac" / "timeline.csv").symlink_to(victim)
    (out / "summary.csv").symlink_to(victim2)
    (out / "linked_wav").symlink_to(elsewhere, target_is_directory=True)
    # an unwritable per-input output: its timeline.json is a folder (works as root, unlike chmod)
    (out / "a_blocked_wav" / "timeline.json").mkdir(parents=True)
    proc = subprocess.run(
        fine_score_cmd(src, "--out", out, "--model", tiny_model),
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
    )
    return proc, out, tmp


def test_planted_links_in_out_are_never_followed(abused) -> None:
    _, out, tmp = abused
    assert (tmp / "victim.txt").read_text() == "precious\n"  # not truncated through the link
    assert (tmp / "victim2.txt").read_text() == "precious too\n"
    assert list((tmp / "elsewhere").iterdir()) == []  # the linked per-input folder received nothing
    csv = out / "jfk_flac" / "timeline.csv"
    assert not csv.is_symlink() and list(read_csv_rows(csv)[0]) == CSV_COLUMNS
    assert not (out / "summary.csv").is_symlink()
    linked = summary_by_name(out)["linked.wav"]
    assert linked["status"] == "failed" and "is a link" in linked["reason"]


def test_a_dollar_in_a_name_breaks_no_plot(abused) -> None:
    _, out, _ = abused
    row = summary_by_name(out)["sales_$5_$10.wav"]
    assert row["status"] == "complete" and row["units"] == 2, row
    folder = out / row["key"]
    assert (folder / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sales_$5_$10.wav" in (folder / "report.html").read_text()


def test_exit_status_1_names_the_failed_inputs(abused) -> None:
    proc, _, _ = abused
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "fine score: 3 of 9 inputs failed: a_blocked.wav, broken.wav, linked.wav (exit status 1)"
    assert "Traceback" not in proc.stderr


def test_an_unwritable_input_folder_fails_that_input_only(abused) -> None:
    _, out, _ = abused
    summary = summary_by_name(out)
    blocked = summary["a_blocked.wav"]  # scored first: the batch went on after it
    assert blocked["status"] == "failed" and "cannot write" in blocked["reason"]
    assert "timeline.json" in blocked["reason"] and "Is a directory" in blocked["reason"]
    assert summary["jfk.flac"]["status"] == "complete" and summary["jfk.flac"]["units"] == 1


def test_hidden_files_and_dangling_links_get_a_summary_line(abused) -> None:
    proc, out, _ = abused
    summary = summary_by_name(out)
    assert summary[".hidden.wav"]["status"] == "skipped" and "hidden file" in summary[".hidden.wav"]["reason"]
    assert summary[".cache"]["status"] == "skipped" and "hidden folder" in summary[".cache"]["reason"]
    assert "x.wav" not in summary  # a hidden folder is one line, not searched
    gone = summary["gone.wav"]
    assert (
        gone["status"] == "skipped" and "dangling link" in gone["reason"] and "nowhere.wav" in gone["reason"]
    )
    assert "9 inputs: 2 complete, 3 failed, 1 partial, 3 skipped; summary in" in proc.stdout


def test_a_partly_decodable_file_is_scored_and_marked_partial(abused) -> None:
    _, out, _ = abused
    cut = summary_by_name(out)["cut.flac"]
    assert cut["status"] == "partial", cut
    assert cut["units"] >= 1 and 1.0 < cut["duration"] < 10.0
    assert "partial: decoding stopped after" in cut["reason"]
    doc = json.loads((out / "cut_flac" / "timeline.json").read_text())
    assert doc["status"] == "partial" and doc["rows"][0]["text"].lower().startswith("and so")


def test_concurrent_runs_on_one_out_never_tear(samples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Three real processes on one --out: the first scores, the others are refused with one line."""
    out = tmp_path / "out"
    jfk = samples_dir / "jfk.flac"
    cmd = fine_score_cmd(jfk, jfk, jfk, "--out", out, "--model", tiny_model)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    lock = out / ".fine-score.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    others = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        for _ in range(2)
    ]
    results = [(*p.communicate(timeout=300), p.returncode) for p in [first, *others]]
    assert results[0][2] == 0, results[0][1][-2000:]
    for stdout, stderr, rc in results[1:]:
        assert rc == 2 and stdout == ""
        assert stderr.strip().splitlines()[-1] == (
            f"fine score: {out}: another fine score run (pid {first.pid}) is writing into this folder; "
            "wait for it to finish or choose another --out"
        )
    for key in ("jfk_flac", "jfk_flac-2", "jfk_flac-3"):
        doc = json.loads((out / key / "timeline.json").read_text())
        rows = read_csv_rows(out / key / "timeline.csv")
        assert doc["status"] == "complete" and len(rows) == len(doc["rows"]) == 1
        assert all(None not in r and None not in r.values() for r in rows)  # no torn row
    lines = (out / "summary.csv").read_text().splitlines()
    assert len(lines) == 4 and all(",complete," in x for x in lines[1:])


def test_the_same_file_twice_gives_the_same_timeline(
    samples_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """jfk looped 3x in light noise: faster-whisper's fallback samples on it (a different transcript per
    call with its default options); batch scoring must not. The same file twice in one run."""
    from core.features.decode import load_audio

    a = load_audio(samples_dir / "jfk.flac")
    x = np.concatenate([a, a, a])
    x = (x + 0.05 * np.random.default_rng(0).standard_normal(x.size)).astype(np.float32)
    looped = tmp_path / "jfk3.wav"
    sf.write(looped, x, 16000, subtype="FLOAT")  # the exact samples (16-bit rounding hides the case)
    out = tmp_path / "out"
    proc = subprocess.run(
        fine_score_cmd(looped, looped, "--out", out, "--model", tiny_model),
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((out / "jfk3_wav" / "timeline.json").read_text())["rows"]
    two = json.loads((out / "jfk3_wav-2" / "timeline.json").read_text())["rows"]
    assert len(one) >= 3 and one == two
    assert (out / "jfk3_wav" / "timeline.csv").read_bytes() == (
        out / "jfk3_wav-2" / "timeline.csv"
    ).read_bytes()


def test_a_folder_that_is_not_a_model_is_named(samples_dir: Path, tmp_path: Path, capsys) -> None:
    from app.pipeline.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(samples_dir / "jfk.flac"), "--out", str(tmp_path / "o"), "--model", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"fine score: {empty}: not a model (no config.json, .onnx or .engine in it); pass a directory "
        "written by 'fine train' or 'fine export', or leave --model out for the shipped default model"
    )
