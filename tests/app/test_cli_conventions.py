"""``fine`` conventions: --version, examples at the end of every --help, -q, ``fine score --json`` and
the batch's index.html, build-default without a data default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli

REPO = Path(__file__).resolve().parents[2]


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert (out.startswith("fine ") and out.split()[1][0].isdigit()) or "unknown" in out


def test_top_level_help_documents_options_and_examples(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("--version", "-v, --verbose", "-q, --quiet", "MediaPipe", "exit codes", "examples:"):
        assert needle in out
    assert out.rstrip().splitlines()[-1].strip().startswith("fine ")


@pytest.mark.parametrize(
    "name", sorted([*cli.COMMANDS, *(f"bench {b}" for b in cli.BENCHES)]), ids=lambda n: n.replace(" ", "-")
)
def test_every_subcommand_help_ends_with_examples(name: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main([*name.split(), "--help"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    tail = lines[-8:]
    assert any(line.strip() == "examples:" for line in tail), "\n".join(lines[-12:])
    assert lines[-1].strip().startswith(("fine ", "FINE_")), lines[-1]


def test_build_default_has_no_data_default(monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("FINE_DATA", raising=False)
    assert cli.main(["build-default", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0] and "FINE_DATA" in err[0]


def test_quiet_filters_native_chatter_but_not_our_lines() -> None:
    pytest.importorskip("mediapipe")
    code = (
        "import sys\n"
        "from app.quiet import silence_native_chatter\n"
        "silence_native_chatter()\n"
        "import numpy as np, mediapipe as mp\n"
        "fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True)\n"
        "fm.process(np.zeros((64, 64, 3), np.uint8))\n"
        "print('fine score: our own line stays', file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fine score: our own line stays" in r.stderr
    assert "XNNPACK" not in r.stderr and "inference_feedback_manager" not in r.stderr
    assert "absl::InitializeLog" not in r.stderr


def test_score_json_and_batch_index(samples_dir: Path, tiny_model: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline.cli import main

    out = tmp_path / "o"
    args = [str(samples_dir / "jfk.flac"), "--out", str(out), "--model", str(tiny_model), "--json"]
    assert main([*args, "--no-progress", "--threads", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON document
    assert doc["format"] == "fine-score" and doc["counts"] == {"complete": 1}
    (item,) = doc["inputs"]
    assert item["status"] == "complete" and item["units"] == len(item["rows"]) >= 1
    assert "fellow Americans" in item["rows"][0]["text"]
    assert Path(item["files"]["timeline.csv"]).is_file()
    index = (out / "index.html").read_text()
    assert 'href="jfk_flac/report.html"' in index and 'href="jfk_flac/timeline.csv"' in index
    page = (out / "jfk_flac" / "report.html").read_text()
    assert 'href="timeline.csv"' in page and "Summary" in page and "Baseline" in page
    assert "caveats" in page and '<audio id="media"' in page and "seek(" in page
