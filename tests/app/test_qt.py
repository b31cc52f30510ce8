"""The desktop window (real Qt widgets, offscreen) driven by real file replays and a failing source."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt

from app.live.config import LiveConfig
from app.live.sources import FileAudioSource, FileVideoSource
from app.qt.window import MainWindow
from tests.app.faults import UnpluggedVideo

pytestmark = pytest.mark.gui

SMILING = "face_smiling_plus_tts_positive.mp4"


@pytest.fixture
def window(qtbot, tmp_path: Path, live_scorer, live_transcriber, tiny_model: Path):  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "fine.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings, LiveConfig(live_hz=4.0))
    qtbot.addWidget(win)
    win.show()
    win.set_model(live_scorer, live_transcriber, str(tiny_model))
    yield win
    if win.session is not None:
        win.session.stop()
        win.session = None


def _wait_stopped(qtbot, win: MainWindow, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: win.session is None and not win.busy, timeout=int(timeout * 1000))


def test_fast_replay_fills_every_view(qtbot, window: MainWindow, samples_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window.start_file(samples_dir / SMILING, fast=True)
    qtbot.waitUntil(lambda: window.session is not None and window.session.running, timeout=30000)
    _wait_stopped(qtbot, window)  # the replay ends, everything is scored, the session stops itself
    assert window.isVisible()
    assert len(window.rows) >= 1
    words = window.transcript.committed.lower()
    assert "loved this film" in words and "really happy" in words
    assert len(window.plot.utterance_points) == len(window.rows)
    for x, y in window.plot.utterance_points:
        assert 0.0 <= x <= 7.0 and math.isfinite(y)
    shown = window.contributions.values()
    assert set(shown) == {"text", "audio", "vision"}
    last = window.rows[-1]
    for i, m in enumerate(("text", "audio", "vision")):
        contribution, unimodal = shown[m]
        assert math.isfinite(contribution) and math.isfinite(unimodal)
        assert contribution == pytest.approx(last.contributions[i], abs=1e-4)
    assert abs(sum(last.contributions) - (last.score - last.baseline)) < 1e-4  # Shapley efficiency
    assert last.presence == (True, True, True)
    assert window.video.frames_shown >= 1 and window.video.landmarks_drawn >= 1
    # the face panel shows the expression encoder's reading of the smiling face at the vision rate
    assert window.expression.current is not None  # the encoder's reading of the last analysed frame
    label, probability, valence = window.expression.current
    assert 0.0 < probability <= 1.0 and -1.0 <= valence <= 1.0 and label in window.expression.text()
    # export writes the same rows in the fine score format
    json_path = window.export_timeline(tmp_path / "export.csv")
    import json

    doc = json.loads(json_path.read_text())
    assert doc["status"] == "complete" and [r["score"] for r in doc["rows"]] == [r.score for r in window.rows]


def test_stop_and_start_again(qtbot, window: MainWindow, samples_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Real-time replay: stop mid-clip with the Start/Stop action, start again, it plays again."""
    for _ in range(2):
        before = window.video.frames_shown
        window.start_file(samples_dir / SMILING, fast=False)
        qtbot.waitUntil(lambda b=before: window.video.frames_shown >= b + 10, timeout=30000)
        qtbot.waitUntil(lambda: len(window.plot.live_points) >= 2, timeout=30000)
        assert window.start_action.text() == "Stop"
        window.start_action.trigger()  # what Space does
        _wait_stopped(qtbot, window, 30)
        assert window.start_action.text() == "Start" and window.isVisible()
    assert window.errors == []
    assert window.presence.current == {"vision": "absent", "audio": "absent", "text": "absent"}


def test_camera_unplugged_mid_stream(qtbot, window: MainWindow, samples_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """A video source that raises at 1 s and never comes back: the error is shown, the face is absent
    (in the presence view and in the scores), voice and words are still scored, the app stays up."""
    clip = samples_dir / SMILING
    video = UnpluggedVideo(FileVideoSource(clip), fail_at=1.0)
    seen: list[dict[str, str]] = []
    window.timer.timeout.connect(lambda: seen.append(dict(window.presence.current)))
    window.start_sources(video, FileAudioSource(clip, 16000), realtime=True, name="unplugged")
    _wait_stopped(qtbot, window, 90)
    assert window.isVisible()
    assert window.errors and window.errors[0][0] == "video"
    assert "device disconnected" in window.errors[0][1]
    assert "video:" in window.error_label.text()
    assert any(s.get("vision") == "absent" and s.get("audio") == "present" for s in seen)
    assert len(window.rows) >= 1
    for row in window.rows:  # voice and words scored; the face only from the frames before 1 s
        assert row.presence[:2] == (True, True) and math.isfinite(row.score)
    assert video.failed_at is not None
    late = [r for r in window.live_rows if r.end > video.failed_at + 0.5]
    assert len(late) >= 3  # the rolling score went on without the face
    assert all(r.presence[2] is False and r.contributions[2] == 0.0 for r in late)
    assert any(r.presence[1] for r in late)


def test_model_that_fails_to_load_leaves_the_app_up(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = window.scorer
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{ broken")
    window.load_model(bad)
    qtbot.waitUntil(lambda: not window.busy, timeout=30000)
    assert window.errors and window.errors[-1][0] == "model"
    assert str(bad) in window.error_label.text()
    assert window.scorer is good and window.isVisible()  # the previous model is still in use


def test_settings_are_remembered(qtbot, window: MainWindow, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    window.fast_box.setChecked(True)
    window.record_action.trigger()
    window.close()
    s = window.settings
    assert s.value("model") == str(tiny_model)
    assert s.value("fast", type=bool) is True and s.value("record", type=bool) is True
    again = MainWindow(s)
    qtbot.addWidget(again)
    assert again.fast_box.isChecked() and again.record_action.isChecked()


def test_status_bar_shows_file_names_as_text_not_markup(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "<b>bold<i>model"
    bad.mkdir()
    window.load_model(bad)
    qtbot.waitUntil(lambda: not window.busy, timeout=30000)
    for label in (window.error_label, window.model_label, window.rate_label):
        assert label.textFormat() == Qt.TextFormat.PlainText
    assert "<b>bold<i>model" in window.error_label.text()
