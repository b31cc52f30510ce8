"""The main window: sources and model pickers, start/stop, recording, export; video, level, transcript,
sentiment plot, contributions, presence and a status bar with backend, latency and frame rates.

Models load and sessions start and stop in background threads; engine callbacks arrive as Qt signals
(:class:`EngineBridge`); the preview is polled from :meth:`LiveSession.snapshot` at 60 Hz. Nothing a
camera, microphone or model does can close the window: failures are shown and the modality is absent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QMainWindow,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.assets import DEMO_CLIP, resolve_model
from app.live.config import LiveConfig
from app.live.record import SessionRecorder
from app.live.session import LiveSession
from app.live.sources import (
    AudioSource,
    CameraSource,
    MicrophoneSource,
    VideoSource,
    file_sources,
    list_cameras,
    list_microphones,
)
from app.live.supervise import RateMeter, one_line
from app.pipeline.scorer import Scorer
from app.pipeline.timeline import TimelineRow, TimelineWriter
from app.qt.bridge import EngineBridge
from app.qt.widgets import (
    ContributionsView,
    ExpressionView,
    LevelMeter,
    PresenceView,
    SentimentPlot,
    TranscriptView,
    VideoView,
    fmt_rate,
)
from core.errors import FineError
from core.features.transcribe import Transcriber

log = logging.getLogger(__name__)


class Worker(QObject):
    """Signals for work done in plain threads (model loading, session start/stop)."""

    model_loaded = Signal(object, object, str)  # scorer, transcriber, path
    model_failed = Signal(str)
    session_started = Signal(object)
    session_stopped = Signal()
    session_failed = Signal(str)


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings, config: LiveConfig | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.settings, self.backend = settings, backend
        self.config = config or LiveConfig()
        self.scorer: Scorer | None = None
        self.transcriber: Transcriber | None = None
        self.session: LiveSession | None = None
        self.rows: list[TimelineRow] = []  # committed utterances of the current session
        self.live_rows: list[TimelineRow] = []  # its rolling scores
        self.errors: list[tuple[str, str]] = []
        self.busy = False  # a model load or a session start/stop is in progress
        self._pending_start: tuple[Any, ...] | None = None
        self._last_frame: object = None
        self._shown = RateMeter()
        self.bridge = EngineBridge()
        self.worker = Worker()
        self.setWindowTitle("FINE live - multimodal sentiment")
        self._build_ui()
        self._build_actions()
        self._connect()
        self._fill_sources()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)
        self.timer.start(16)  # the preview shows every frame of a 30 fps camera
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)

    # ------------------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        self.video = VideoView()
        self.level = LevelMeter()
        self.presence = PresenceView()
        self.expression = ExpressionView()
        self.transcript = TranscriptView()
        self.plot = SentimentPlot()
        self.contributions = ContributionsView()
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(self.video, 1)
        lv.addWidget(self.expression)
        lv.addWidget(self.presence)
        lv.addWidget(self.level)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.addWidget(QLabel("Transcript (grey: tentative)"))
        rv.addWidget(self.transcript, 1)
        rv.addWidget(self.contributions)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(left)
        top.addWidget(right)
        top.setSizes([640, 560])
        central = QWidget()
        grid = QGridLayout(central)
        grid.addWidget(top, 0, 0)
        grid.addWidget(self.plot, 1, 0)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        self.setCentralWidget(central)
        bar = self.statusBar()
        self.model_label = QLabel("no model")
        self.rate_label = QLabel("")
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color:#c0392b")
        for label in (self.model_label, self.rate_label, self.error_label):  # file names are not markup
            label.setTextFormat(Qt.TextFormat.PlainText)
        bar.addWidget(self.error_label, 1)
        bar.addPermanentWidget(self.rate_label)
        bar.addPermanentWidget(self.model_label)

    def _build_actions(self) -> None:
        tb = QToolBar("main")
        tb.setObjectName("main-toolbar")
        self.addToolBar(tb)
        self.source_box = QComboBox()
        self.source_box.setToolTip("video source: a camera, the demo clip or an opened file")
        self.mic_box = QComboBox()
        self.mic_box.setToolTip("microphone (used with a camera)")
        self.fast_box = QCheckBox("fast replay")
        self.fast_box.setToolTip("replay files as fast as possible instead of in real time")
        self.fast_box.setChecked(bool(self.settings.value("fast", False, type=bool)))

        def action(text: str, key: Any, slot: Any, checkable: bool = False) -> QAction:
            a = QAction(text, self)
            a.setShortcut(QKeySequence(key))
            a.setCheckable(checkable)
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.start_action = action("Start", Qt.Key.Key_Space, self.toggle_session)
        self.open_action = action("Open file…", QKeySequence.StandardKey.Open, self.choose_file)
        self.model_action = action("Model…", "Ctrl+M", self.choose_model)
        self.record_action = action("Record", "Ctrl+R", self._record_toggled, checkable=True)
        self.record_action.setToolTip("autosave the timeline (and audio) of each session as it goes")
        self.record_action.setChecked(bool(self.settings.value("record", False, type=bool)))
        self.record_video_action = action(
            "Record video too", "Ctrl+Shift+R", self._record_video_toggled, True
        )
        self.record_video_action.setChecked(bool(self.settings.value("record_video", False, type=bool)))
        self.export_action = action("Export…", "Ctrl+E", self.choose_export)
        self.quit_action = action("Quit", QKeySequence.StandardKey.Quit, self.close)
        menu = self.menuBar().addMenu("&Session")
        for a in (
            self.start_action,
            self.open_action,
            self.model_action,
            self.record_action,
            self.record_video_action,
            self.export_action,
            self.quit_action,
        ):
            menu.addAction(a)
        tb.addAction(self.start_action)
        tb.addWidget(QLabel(" source "))
        tb.addWidget(self.source_box)
        tb.addWidget(QLabel(" mic "))
        tb.addWidget(self.mic_box)
        tb.addWidget(self.fast_box)
        tb.addSeparator()
        for a in (self.open_action, self.model_action, self.record_action, self.export_action):
            tb.addAction(a)

    def _connect(self) -> None:
        b, w = self.bridge, self.worker
        b.row.connect(self._on_row)
        b.live.connect(self._on_live)
        b.transcript.connect(self.transcript.update_text)
        b.error.connect(self._on_error)
        b.finished.connect(self._on_finished)
        w.model_loaded.connect(self._on_model_loaded)
        w.model_failed.connect(self._on_model_failed)
        w.session_started.connect(self._on_started)
        w.session_stopped.connect(self._on_stopped)
        w.session_failed.connect(self._on_session_failed)

    def _fill_sources(self) -> None:
        self.source_box.clear()
        cameras = list_cameras()
        for i in cameras:
            self.source_box.addItem(f"Camera {i}", ("camera", i))
        if DEMO_CLIP.is_file():
            self.source_box.addItem("Demo clip", ("file", str(DEMO_CLIP)))
        last = self.settings.value("last_file", "")
        if last and Path(str(last)).is_file():
            self.source_box.addItem(f"File: {Path(str(last)).name}", ("file", str(last)))
        self.mic_box.clear()
        self.mic_box.addItem("default microphone", None)
        for i, name in list_microphones():
            self.mic_box.addItem(name, i)
        self.mic_box.addItem("no microphone", "none")
        saved = self.settings.value("source")
        idx = next((i for i in range(self.source_box.count()) if self.source_box.itemText(i) == saved), -1)
        if idx >= 0:
            self.source_box.setCurrentIndex(idx)
        if not cameras:
            self.statusBar().showMessage(
                "No camera found: press Space to play the demo clip, or Ctrl+O to open a file", 15000
            )

    # ------------------------------------------------------------------------------ model
    def choose_model(self) -> None:
        start = str(self.settings.value("model", ""))
        path = QFileDialog.getExistingDirectory(self, "Model directory", start)
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> None:
        """Load in the background; a failure is a message and the window stays."""
        self.busy = True
        self.model_label.setText(f"loading {Path(path).name}…")
        cfg, backend, w = self.config, self.backend, self.worker

        def work() -> None:
            try:
                scorer = Scorer(path, backend, threads=cfg.threads)
                transcriber = self.transcriber or Transcriber(
                    cfg.whisper_model, cfg.language, cfg.asr_threads
                )
                transcriber.warm_up()
                w.model_loaded.emit(scorer, transcriber, str(path))
            except Exception as exc:  # anything: the app must stay up
                log.debug("model load failed", exc_info=True)
                w.model_failed.emit(
                    f"{path}: {one_line(exc)}" if not isinstance(exc, FineError) else str(exc)
                )

        threading.Thread(target=work, name="fine-model-load", daemon=True).start()

    def set_model(self, scorer: Scorer, transcriber: Transcriber, path: str) -> None:
        """Use an already loaded model (what a background :meth:`load_model` ends with)."""
        self._on_model_loaded(scorer, transcriber, path)

    def _on_model_loaded(self, scorer: Scorer, transcriber: Transcriber, path: str) -> None:
        old = self.scorer
        self.scorer, self.transcriber = scorer, transcriber
        if old is not None and (self.session is None or self.session.scorer is not old):
            old.close()
        self.settings.setValue("model", path)
        self.model_label.setText(f"{scorer.model_id} · {scorer.runner.describe()}")
        self.plot.set_label_range(scorer.info.label_range)
        self.busy = False
        if self._pending_start is not None:
            args, self._pending_start = self._pending_start, None
            self.start_sources(*args)

    def _on_model_failed(self, message: str) -> None:
        self.busy = False
        self._pending_start = None
        self.model_label.setText("no model" if self.scorer is None else self.scorer.model_id)
        self._show_error("model", f"{message} (choose another with Model…, Ctrl+M)")

    # ------------------------------------------------------------------------------ sessions
    def toggle_session(self) -> None:
        if self.session is not None:
            self.stop_session()
        else:
            self.start_selected()

    def start_selected(self) -> None:
        data = self.source_box.currentData()
        if data is None:
            self._show_error("source", "no source: open a file with Ctrl+O")
            return
        kind, arg = data
        self.settings.setValue("source", self.source_box.currentText())
        if kind == "camera":
            mic = self.mic_box.currentData()
            sr = self.scorer.sample_rate if self.scorer is not None else 16000
            audio = None if mic == "none" else MicrophoneSource(mic, sr)
            self.start_sources(CameraSource(int(arg)), audio, True, f"camera {arg}")
        else:
            self.start_file(arg, fast=self.fast_box.isChecked())

    def _select_file(self, path: str | Path) -> None:
        """Show ``path`` as the current source (adding it to the list if needed)."""
        for i in range(self.source_box.count()):
            data = self.source_box.itemData(i)
            if data is not None and data[0] == "file" and Path(data[1]) == Path(path):
                self.source_box.setCurrentIndex(i)
                return
        self.source_box.addItem(f"File: {Path(path).name}", ("file", str(path)))
        self.source_box.setCurrentIndex(self.source_box.count() - 1)

    def choose_file(self) -> None:
        start = str(self.settings.value("last_dir", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Replay a recording",
            start,
            "Media (*.mp4 *.mkv *.avi *.mov *.webm *.mpg *.wav *.flac *.mp3);;All files (*)",
        )
        if path:
            self.settings.setValue("last_dir", str(Path(path).parent))
            self.settings.setValue("last_file", path)
            if self.session is not None:
                self.stop_session()
            self.start_file(path, fast=self.fast_box.isChecked())

    def start_file(self, path: str | Path, fast: bool = False) -> None:
        self._select_file(path)
        sr = self.scorer.sample_rate if self.scorer is not None else 16000
        try:
            video, audio = file_sources(path, sr)
        except FineError as exc:
            self._show_error("source", str(exc))
            return
        self.start_sources(video, audio, not fast, Path(path).name)

    def start_sources(
        self, video: VideoSource | None, audio: AudioSource | None, realtime: bool = True, name: str = ""
    ) -> None:
        """Start a session on these sources (the tests inject their own here)."""
        if self.session is not None:
            self._show_error("session", "a session is running: stop it first (Space)")
            return
        if self.scorer is None:
            if self.busy:  # the model is still loading: start when it is ready
                self._pending_start = (video, audio, realtime, name)
                return
            self._show_error("model", "no model loaded: choose one with Model… (Ctrl+M)")
            return
        config = replace(self.config, realtime=realtime)
        recorder = self._recorder(name, audio is not None)
        self.session = LiveSession(
            self.scorer, video, audio, config, self.bridge.events(), self.transcriber, recorder
        )
        self.rows, self.live_rows = [], []
        self.errors = []
        self.error_label.setText("")
        self.transcript.clear_text()
        self.plot.clear_points()
        self.video.clear_frame("starting…")
        self.busy = True
        self.start_action.setText("Stop")
        session, w = self.session, self.worker

        def work() -> None:
            try:
                session.start()
                w.session_started.emit(session)
            except Exception as exc:
                log.debug("session start failed", exc_info=True)
                w.session_failed.emit(one_line(exc))

        threading.Thread(target=work, name="fine-session-start", daemon=True).start()
        self.statusBar().showMessage(f"started {name}", 5000)

    def _recorder(self, name: str, audio: bool) -> SessionRecorder | None:
        if not self.record_action.isChecked() or self.scorer is None:
            return None
        root = Path(str(self.settings.value("record_dir", str(Path.home() / "fine-sessions"))))
        out = root / dt.datetime.now().strftime("session-%Y%m%d-%H%M%S")
        video = bool(self.settings.value("record_video", False, type=bool))
        meta = {"input": name, "model_id": self.scorer.model_id}
        try:
            rec = SessionRecorder(out, meta, audio=audio, video=video, sample_rate=self.scorer.sample_rate)
        except (OSError, FineError) as exc:
            self._show_error("record", f"{out}: cannot record ({one_line(exc)})")
            return None
        self.statusBar().showMessage(f"recording into {out}", 8000)
        return rec

    def stop_session(self) -> None:
        session, w = self.session, self.worker
        if session is None:
            return
        self.busy = True
        self.start_action.setText("Stopping…")

        def work() -> None:
            try:
                session.stop()
            finally:
                w.session_stopped.emit()

        threading.Thread(target=work, name="fine-session-stop", daemon=True).start()

    def _on_started(self, session: LiveSession) -> None:
        self.busy = False

    def _on_stopped(self) -> None:
        self.session = None
        self.busy = False
        self.start_action.setText("Start")
        self.video.clear_frame("stopped")
        self.presence.set_states({})

    def _on_session_failed(self, message: str) -> None:
        self._show_error("session", message)
        self.stop_session()

    def _on_finished(self) -> None:
        self.statusBar().showMessage("replay finished", 8000)
        self.stop_session()

    # ------------------------------------------------------------------------------ updates
    def _on_row(self, row: TimelineRow) -> None:
        self.rows.append(row)
        self.plot.add_utterance(row)
        self.contributions.show_row(row)

    def _on_live(self, row: TimelineRow) -> None:
        self.live_rows.append(row)
        self.plot.add_live(row)

    def _on_error(self, stage: str, message: str) -> None:
        self._show_error(stage, f"{message} (retrying)")

    def _show_error(self, stage: str, message: str) -> None:
        self.errors.append((stage, message))
        self.error_label.setText(f"{stage}: {message}")
        log.warning("%s: %s", stage, message)

    def _poll(self) -> None:
        session = self.session
        if session is None:
            return
        snap = session.snapshot()
        if snap.frame is not None and snap.frame is not self._last_frame:
            self._last_frame = snap.frame
            self.video.set_frame(snap.frame.rgb, snap.face)
            self.expression.set_face(snap.face)
            self._shown.tick()
        elif snap.frame is None and self._last_frame is not None:
            self._last_frame = None
            self.video.clear_frame("no video (camera absent or failed)")
        self.level.set_level(snap.level_db)
        self.presence.set_states(snap.states)
        self.rate_label.setText(
            f"preview {fmt_rate(self._shown.rate(), 'fps')} · vision {fmt_rate(snap.vision_fps, 'fps')} · "
            f"latency {fmt_rate(snap.latency, 's')} · t {snap.stream_time:.1f} s"
        )

    # ------------------------------------------------------------------------------ record/export
    def _record_toggled(self, on: bool) -> None:
        self.settings.setValue("record", on)
        if on:
            self.statusBar().showMessage("the next session is recorded (timeline autosaved as it goes)", 6000)

    def _record_video_toggled(self, on: bool) -> None:
        self.settings.setValue("record_video", on)

    def choose_export(self) -> None:
        start = str(self.settings.value("last_dir", str(Path.home())))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export timeline", str(Path(start) / "timeline.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_timeline(Path(path))

    def export_timeline(self, csv_path: Path) -> Path:
        """Write the session's rows as ``NAME.csv`` + ``NAME.json`` (the ``fine score`` format)."""
        json_path = csv_path.with_suffix(".json")
        meta = {"input": "live", "model_id": self.scorer.model_id if self.scorer else "", "mode": "live"}
        with TimelineWriter(csv_path, json_path, meta) as writer:
            writer.append(list(self.rows))
            writer.close("complete")
        self.statusBar().showMessage(f"exported {len(self.rows)} utterances to {csv_path}", 8000)
        return json_path

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("fast", self.fast_box.isChecked())
        self.timer.stop()
        if self.session is not None:
            self.session.stop(timeout=5.0)
            self.session = None
        event.accept()


def run_app(args: argparse.Namespace) -> int:
    app = QApplication.instance() or QApplication(["fine app"])
    settings = QSettings("fine-msa", "fine-app")
    window = MainWindow(settings, backend=args.backend)
    window.show()
    model = args.model or settings.value("model") or None
    try:
        window.load_model(resolve_model(model))
    except FineError as exc:
        window._show_error("model", str(exc))
    if args.file is not None:
        window.start_file(args.file, fast=args.fast)
    return int(app.exec())
