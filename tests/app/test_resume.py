"""Acceptance 2: kill ``fine score`` halfway, ``--resume``: finished inputs are not recomputed and no
output file is corrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.pipeline.timeline import read_csv_rows

REPO = Path(__file__).resolve().parents[2]


def outputs_are_whole(out: Path, after_kill: bool = False) -> None:
    """Every file that exists parses: JSON documents, CSV rows, PNG images. A SIGKILL may leave a hidden
    ``.NAME.*.tmp`` (the atomic writer's half-written temporary; never read): allowed right after the kill,
    gone after a resumed run."""
    import matplotlib.image

    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for path in out.rglob("*.csv"):
        rows = read_csv_rows(path)
        assert all(None not in r.values() and None not in r for r in rows), path  # no short rows
    for path in out.rglob("*.png"):
        assert matplotlib.image.imread(path).shape[0] > 100
    if not after_kill:
        assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow
def test_kill_then_resume(samples_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [samples_dir / n for n in ("jfk.flac", "tts_negative_en.wav", "tts_positive_en.wav")]
    cmd = [sys.executable, "-m", "app.cli", "-q", "score", *map(str, inputs), "--out", str(out)]
    cmd += ["--model", str(tiny_model), "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = out / "jfk_flac" / "timeline.json"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if first.exists() and json.loads(first.read_text())["status"] == "complete":
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outputs_are_whole(out, after_kill=True)
    (out / ".summary.csv.planted.tmp").write_bytes(b"input,sta")  # what a kill mid-write leaves
    last = out / "tts_positive_en_wav" / "timeline.json"
    assert not last.exists() or json.loads(last.read_text())["status"] != "complete"
    before = {p: p.stat().st_mtime_ns for p in (out / "jfk_flac").iterdir()}
    assert {p.name for p in before} == {"timeline.csv", "timeline.json", "plot.png", "report.html"}

    r = subprocess.run([*cmd, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3 inputs: 3 complete" in r.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "jfk_flac").iterdir()} == before  # not recomputed
    summary = {Path(x["input"]).name: x for x in json.loads((out / "summary.json").read_text())["inputs"]}
    assert "resumed: not recomputed" in summary["jfk.flac"]["reason"]
    assert summary["jfk.flac"]["units"] >= 1 and summary["jfk.flac"]["mean_score"] is not None
    assert "resumed" not in summary["tts_positive_en.wav"]["reason"]
    for key in ("jfk_flac", "tts_negative_en_wav", "tts_positive_en_wav"):
        doc = json.loads((out / key / "timeline.json").read_text())
        assert doc["status"] == "complete"
        assert len(read_csv_rows(out / key / "timeline.csv")) == len(doc["rows"]) >= 1
    outputs_are_whole(out)
