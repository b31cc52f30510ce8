from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
    assert page.count("<tr>") == 2 + 1 + 2  # two facts, the header, two units
    assert "+0.500" in page and "-0.125" in page
    assert "http" not in page  # nothing fetched from elsewhere
