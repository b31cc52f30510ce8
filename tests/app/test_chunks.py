"""Chunked scoring: chunk cuts, units that are final as chunks arrive (the same units as a whole-file
pass), a plot title or words with TeX characters, and memory/early rows on long files (slow)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.pipeline.chunks import UnitStream, chunk_bounds
from app.pipeline.config import SegmentConfig
from app.pipeline.segment import sliding_windows, utterances
from core.features.text import Word

REPO = Path(__file__).resolve().parents[2]


def test_chunks_cover_the_audio_and_cut_in_the_quietest_moment() -> None:
    rate = 100
    audio = np.ones(1000, dtype=np.float32)
    audio[265:275] = 0.0  # a quiet 100 ms in the last quarter of the first 3 s chunk
    audio[535:545] = 0.0  # and of the second
    bounds = list(chunk_bounds(audio, rate, chunk_seconds=3.0))
    assert bounds[:2] == [(0, 270), (270, 540)]  # cut in the middle of the quiet frame
    assert bounds[-1][1] == 1000 and all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert list(chunk_bounds(audio[:100], rate, chunk_seconds=3.0)) == [(0, 100)]
    assert list(chunk_bounds(audio, rate, 3.0)) == bounds  # deterministic


def _words(spec: list[tuple[str, float, float]]) -> list[Word]:
    return [Word(w, s, e, 0.9) for w, s, e in spec]


WORDS = _words(
    [
        ("I", 0.5, 0.7),
        ("like", 0.8, 1.1),
        ("it", 1.2, 1.4),
        ("but", 5.0, 5.3),  # after a 3.6 s pause: a new utterance
        ("the", 5.4, 5.5),
        ("end.", 5.6, 6.2),
        ("Then", 9.1, 9.4),  # straddles nothing; the chunk ends at 9.0
        ("more", 9.5, 9.9),
        ("words", 10.0, 10.6),
    ]
)


@pytest.mark.parametrize(
    "config", [SegmentConfig(), SegmentConfig(window=2.0), SegmentConfig(window=3.0, hop=1.0)]
)
def test_streamed_units_are_the_whole_file_units(config: SegmentConfig) -> None:
    duration = 12.0
    whole = sliding_windows(duration, WORDS, config) if config.window else utterances(WORDS, config)
    stream, got = UnitStream(config, duration), []
    for lo, until in ((0.0, 3.0), (3.0, 9.0), (9.0, duration)):
        got += stream.push([w for w in WORDS if lo <= w.start < until], until)
    got += stream.flush()
    assert got == whole


def test_an_utterance_is_final_once_a_chunk_ends_a_pause_after_it() -> None:
    stream = UnitStream(SegmentConfig(max_pause=2.0), 20.0)
    first = stream.push(WORDS[:3], until=3.0)  # "I like it" ends at 1.4, the chunk at 3.0 < 1.4 + 2
    assert first == []
    done = stream.push([], until=3.5)
    assert [u.text for u in done] == ["I like it"]


def test_dollar_signs_in_titles_and_words_are_text(tmp_path: Path) -> None:
    from app.pipeline.report import render_plot
    from app.pipeline.timeline import TimelineRow

    row = TimelineRow(
        0,
        "utterance",
        0.0,
        2.0,
        "it costs $5 and $10",
        0.5,
        (0.1, 0.2, 0.0),
        (0.1, 0.2, 0.0),
        (True, True, False),
        0.2,
        "m",
    )
    png = render_plot([row], "sales_$5_$10.wav - 1 utterances - model m", 2.0, (-3.0, 3.0))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _peak_rss_run(audio: Path, out: Path, model: Path) -> tuple[float, float | None]:
    """Run ``fine score`` on ``audio`` in a real process; its peak RSS (MB) and the second at which the
    first timeline row appeared (None when only at the end)."""
    script = (
        "import resource, sys; from app.cli import main; rc = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)"
    )
    cmd = [sys.executable, "-c", script, "score", str(audio), "--out", str(out), "--model", str(model)]
    cmd += ["--no-progress", "--threads", "1", "--print-timeline", "never"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    csv, first_row = out / (audio.name.replace(".", "_")) / "timeline.csv", None
    while proc.poll() is None:
        if first_row is None and csv.exists() and len(csv.read_text().splitlines()) > 1:
            doc = json.loads(csv.with_suffix(".json").read_text())
            if doc["status"] == "running":
                first_row = time.monotonic() - t0
        time.sleep(0.2)
    stdout = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, stdout
    peak = float(next(line.split()[1] for line in stdout.splitlines() if line.startswith("PEAK")))
    return peak, first_row


@pytest.mark.slow
def test_memory_is_flat_and_rows_come_before_the_end(
    samples_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Peak RSS of a 30 s and a 3 min recording within 10 %; the 3 min file has rows on disk (status
    still running) well before the run ends."""
    from core.features.decode import load_audio

    jfk = load_audio(samples_dir / "jfk.flac")
    gap = np.zeros(16000 // 2, dtype=np.float32)
    unit = np.concatenate([jfk, gap])  # 11.5 s
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, np.tile(unit, 3)[: 30 * 16000], 16000)
    sf.write(long, np.tile(unit, 16)[: 180 * 16000], 16000)
    t0 = time.monotonic()
    peak_short, _ = _peak_rss_run(short, tmp_path / "o1", tiny_model)
    t1 = time.monotonic()
    peak_long, first_row = _peak_rss_run(long, tmp_path / "o2", tiny_model)
    t2 = time.monotonic()
    print(
        f"peak RSS 30 s: {peak_short:.0f} MB ({t1 - t0:.0f} s), 3 min: {peak_long:.0f} MB ({t2 - t1:.0f} s), first row after {first_row} s"
    )
    assert abs(peak_long - peak_short) <= 0.10 * peak_short
    assert first_row is not None and first_row < 0.8 * (t2 - t1)
    doc = json.loads((tmp_path / "o2" / "long_wav" / "timeline.json").read_text())
    assert doc["status"] == "complete" and len(doc["rows"]) >= 15 and doc["rows"][-1]["end"] > 170
