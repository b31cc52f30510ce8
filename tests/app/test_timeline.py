from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.pipeline.report import render_html, render_plot
from app.pipeline.timeline import CSV_COLUMNS, TimelineRow, TimelineWriter, read_csv_rows, read_timeline


def row(i: int, text: str = 'fine, "quoted"\nnew line') -> TimelineRow:
    return TimelineRow(
        index=i,
        kind="utterance",
        start=2.0 * i,
        end=2.0 * i + 1.5,
        text=text,
        score=0.5 - i,
        unimodal=(0.1, -0.2, 0.3),
        contributions=(0.25, -0.125, 0.0),
        presence=(True, True, False),
        baseline=0.375 - i,
        model_id="m-123",
    )


def test_writer_appends_rows_and_marks_completion(tmp_path: Path) -> None:
    csv_path, json_path = tmp_path / "t.csv", tmp_path / "t.json"
    writer = TimelineWriter(csv_path, json_path, {"input": "a.mp4"})
    assert read_timeline(json_path)["status"] == "running"
    writer.append([row(0), row(1)])
    # Readable while running: both files hold what has been scored so far.
    assert len(read_csv_rows(csv_path)) == 2
    doc = read_timeline(json_path)
    assert doc["status"] == "running" and len(doc["rows"]) == 2
    writer.append([row(2)])
    writer.close("complete", {"reason": "ok"})
    rows = read_csv_rows(csv_path)
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["text"] == 'fine, "quoted"\nnew line'  # CSV quoting round-trips
    assert float(rows[2]["score"]) == -1.5 and rows[1]["present_vision"] == "0"
    doc = read_timeline(json_path)
    assert doc["status"] == "complete" and doc["input"] == "a.mp4" and doc["reason"] == "ok"
    assert [TimelineRow.from_dict(r) for r in doc["rows"]] == [row(0), row(1), row(2)]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_an_interrupted_writer_leaves_a_running_timeline(tmp_path: Path) -> None:
    try:
        with TimelineWriter(tmp_path / "t.csv", tmp_path / "t.json", {}) as w:
            w.append([row(0)])
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    doc = read_timeline(tmp_path / "t.json")
    assert doc["status"] == "running" and len(doc["rows"]) == 1  # --resume redoes this input
    assert len(read_csv_rows(tmp_path / "t.csv")) == 1


def test_read_timeline_refuses_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text('{"format": "fine-timeline", "rows": [')
    assert read_timeline(bad) is None
    bad.write_text(json.dumps({"format": "other"}))
    assert read_timeline(bad) is None
    assert read_timeline(tmp_path / "missing.json") is None


def test_plot_and_html_are_self_contained(tmp_path: Path) -> None:
    rows = [row(i, text) for i, text in enumerate(["I <loved> it", "not at all"])]
    png = render_plot(rows, "clip.mp4", duration=4.0, label_range=(-3.0, 3.0))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import matplotlib.image

    (tmp_path / "p.png").write_bytes(png)
    img = matplotlib.image.imread(tmp_path / "p.png")
    assert img.shape[0] >= 500 and img.shape[1] >= 1000 and float(np.std(img)) > 0.05  # drawn, not blank
    page = render_html({"input": "clip.mp4", "model_id": "m-123"}, rows, png)
    assert "data:image/png;base64," in page and "I &lt;loved&gt; it" in page and "<loved>" not in page
    # summary (8) + header + two units + two run facts
    assert page.count("<tr>") == 8 + 1 + 2 + 2
    assert "+0.500" in page and "-0.125" in page
    assert "http" not in page  # nothing fetched from elsewhere


def test_report_page_for_a_researcher(tmp_path: Path) -> None:
    """Summary numbers, the baseline, the card's caveats, timeline links, the recording with
    click-to-seek at m:ss, and words/voice/face as the only names of the inputs."""
    from app.pipeline.report import wrap_words
    from app.pipeline.report_html import mmss, summary_numbers

    rows = [row(0, "I loved it"), row(1, "not at all"), row(40, "much later")]
    media = tmp_path / "clips" / "talk.mp4"
    page_dir = tmp_path / "out" / "talk_mp4"
    card = {
        "name": "tiny",
        "caveats": ["face learned from neutral faces only"],
        "training_data": {"text": "MOSI"},
    }
    page = render_html({"input": str(media), "duration": 95.0}, rows, None, card, media, page_dir)
    s = summary_numbers(rows)
    assert s["units"] == 3 and s["mean"] == pytest.approx((0.5 - 0.5 - 39.5) / 3)
    assert s["baseline"] == pytest.approx((0.375 - 0.625 - 39.625) / 3)
    assert "Summary" in page and "utterances scored" in page and "1:35" in page  # duration 95 s
    assert f"Baseline {s['baseline']:+.3f}" in page and "score = baseline + words + voice + face" in page
    assert "face learned from neutral faces only" in page and "<b>words</b>: MOSI" in page
    assert 'href="timeline.csv"' in page and 'href="timeline.json"' in page and 'href="../index.html"' in page
    assert '<video id="media" controls preload="metadata" src="../../clips/talk.mp4">' in page
    assert 'onclick="seek(80.00)"' in page and "1:20.0–1:21.5" in page  # row 40: 80-81.5 s
    for word in ("text", "audio", "vision", "head"):
        assert f">{word}" not in page.lower() and f"{word} contribution" not in page.lower()
    assert "words contribution" in page and "voice alone" in page and "face contribution" in page
    assert mmss(3725.0) == "1:02:05" and mmss(59.99) == "0:59"
    assert wrap_words("extraordinarily unbelievable", 6) == "extraordinarily\nunbelievable"  # never split


def test_score_line_is_not_drawn_across_silences() -> None:
    from app.pipeline.report import _broken_line

    a = row(0)  # 0-1.5 s
    b = TimelineRow(**{**a.to_dict(), "index": 1, "start": 1.6, "end": 3.0})  # 0.1 s later: one stretch
    xs, ys = _broken_line([a, b, row(10)])  # then 20-21.5 s, after a silence
    assert xs[:2] == [0.75, 2.3] and np.isnan(xs[2]) and np.isnan(ys[2]) and xs[3] == 20.75


def test_print_timeline_shows_words_voice_face_contributions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.pipeline.cli import print_timeline

    writer = TimelineWriter(tmp_path / "timeline.csv", tmp_path / "timeline.json", {"input": "a.mp4"})
    writer.append([row(0, "I loved it"), row(1, "not at all")])
    writer.close("complete", {"reason": "ok"})
    print_timeline(tmp_path)
    assert capsys.readouterr().out.splitlines() == [
        "a.mp4  (model m-123)",
        "    start     end   score  words   voice    face  transcript",
        "     0.0     1.5   +0.50  +0.25   -0.12   +0.00  I loved it",
        "     2.0     3.5   -0.50  +0.25   -0.12   +0.00  not at all",
    ]
