"""The window's parts: video with the tracked face, level meter, transcript, sentiment plot,
contributions and presence. Each is fed plain data (numpy frames, timeline rows), never the engine."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.live.buffers import FaceResult
from app.pipeline.report_html import LABELS
from app.pipeline.timeline import TimelineRow
from core.config import MODALITIES, by_modality

COLORS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#9467bd"}  # green and red show sign
POSITIVE, NEGATIVE, NEUTRAL = (44, 160, 44), (214, 39, 40), (120, 120, 120)


def sign_rgb(x: float, eps: float = 0.05) -> tuple[int, int, int]:
    return POSITIVE if x > eps else NEGATIVE if x < -eps else NEUTRAL


STATE_STYLE = {
    "present": "background:#2ca02c;color:white",
    "idle": "background:#d0d0d0;color:#333",
    "absent": "background:#c0392b;color:white",
}


class VideoView(QLabel):
    """The newest frame, scaled to fit, with the tracked face's box and landmarks drawn on it."""

    def __init__(self) -> None:
        super().__init__("no video")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background:#202020;color:#bbb")
        self.frames_shown = 0
        self.landmarks_drawn = 0

    def clear_frame(self, message: str = "no video") -> None:
        self.setPixmap(QPixmap())
        self.setText(message)

    def set_frame(self, rgb: np.ndarray, face: FaceResult | None) -> None:
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb)
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        if face is not None and face.face is not None:
            self._draw_face(image, face, w, h)
        pix = QPixmap.fromImage(image).scaled(
            self.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        self.setPixmap(pix)
        self.frames_shown += 1

    def _draw_face(self, image: QImage, face: FaceResult, w: int, h: int) -> None:
        assert face.face is not None
        sx, sy = w / max(face.size[0], 1), h / max(face.size[1], 1)
        p = QPainter(image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(60, 220, 90))
        pen.setWidthF(max(1.5, w / 320))
        p.setPen(pen)
        x0, y0, x1, y1 = face.face.box
        p.drawRect(QRectF(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy))
        p.setPen(QPen(QColor(120, 255, 160), max(1.0, w / 400)))
        pts = face.face.landmarks
        p.drawPoints([QPointF(float(x) * sx, float(y) * sy) for x, y in pts[:, :2]])
        p.end()
        self.landmarks_drawn += 1


class LevelMeter(QProgressBar):
    """Microphone level in dBFS (-60 .. 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.setRange(-60, 0)
        self.setFormat("mic %v dB")
        self.setValue(-60)
        self.setMaximumHeight(18)

    def set_level(self, db: float) -> None:
        self.setValue(int(max(-60.0, min(0.0, db))))


class TranscriptView(QTextEdit):
    """Committed words in black, the tentative text of the speech in progress in grey italics."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.committed = ""
        self.tentative = ""

    def update_text(self, new_words: str, tentative: str) -> None:
        if new_words:
            self.committed = (self.committed + " " + new_words).strip()
        self.tentative = tentative
        body = html.escape(self.committed[-4000:])
        if tentative:
            body += f' <span style="color:#888;font-style:italic">{html.escape(tentative)}</span>'
        self.setHtml(f'<div style="font-size:13pt">{body}</div>')
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def clear_text(self) -> None:
        self.committed = self.tentative = ""
        self.clear()


class SentimentPlot(pg.PlotWidget):
    """Rolling score of the last seconds (line) and committed utterances (dots, spans shaded)."""

    def __init__(self, label_range: tuple[float, float] = (-3.0, 3.0), span: float = 30.0) -> None:
        super().__init__(background="w")
        self.span = span
        self.setLabel("bottom", "time", units="s")
        self.setLabel("left", "sentiment")
        self.showGrid(x=True, y=True, alpha=0.3)
        self.getAxis("left").enableAutoSIPrefix(False)
        self.addLine(y=0.0, pen=pg.mkPen("#999", style=Qt.PenStyle.DashLine))
        self.live_points: list[tuple[float, float]] = []
        self.utterance_points: list[tuple[float, float]] = []
        self._curve = self.plot([], [], pen=pg.mkPen("#555", width=2), name="rolling")
        self._dots = pg.ScatterPlotItem(size=11, brush=pg.mkBrush("#d62728"), pen=pg.mkPen("k"))
        self.addItem(self._dots)
        self._spans: list[pg.LinearRegionItem] = []
        self.set_label_range(label_range)

    def set_label_range(self, label_range: tuple[float, float]) -> None:
        self.label_range = label_range
        self.setYRange(*label_range, padding=0.05)

    def _fit_y(self) -> None:
        """Zoom to the scores (at least 0.5 tall, never past the label range) so changes are visible."""
        ys = [y for _, y in self.live_points[-400:]] + [y for _, y in self.utterance_points[-100:]]
        lo, hi = min(ys), max(ys)
        mid, half = 0.5 * (lo + hi), max(0.25, 0.6 * (hi - lo))
        self.setYRange(
            max(self.label_range[0], mid - half), min(self.label_range[1], mid + half), padding=0.05
        )

    def add_live(self, row: TimelineRow) -> None:
        self.live_points.append((row.end, row.score))
        self.live_points = self.live_points[-2000:]
        xs, ys = zip(*self.live_points)
        self._curve.setData(list(xs), list(ys))
        self._follow(row.end)
        self._fit_y()

    def add_utterance(self, row: TimelineRow) -> None:
        mid = 0.5 * (row.start + row.end)
        self.utterance_points.append((mid, row.score))
        rgb = sign_rgb(row.score)  # dot and shading: green positive, red negative, grey near zero
        self._dots.addPoints([{"pos": (mid, row.score), "data": row.index, "brush": pg.mkBrush(*rgb)}])
        region = pg.LinearRegionItem((row.start, row.end), movable=False, brush=pg.mkBrush(*rgb, 40))
        region.setZValue(-10)
        self.addItem(region)
        self._spans.append(region)
        self._follow(row.end)
        self._fit_y()

    def _follow(self, t: float) -> None:
        self.setXRange(max(0.0, t - self.span), max(t, 10.0), padding=0.02)

    def clear_points(self) -> None:
        self.live_points, self.utterance_points = [], []
        self._curve.setData([], [])
        self._dots.clear()
        for r in self._spans:
            self.removeItem(r)
        self._spans = []


class ContributionsView(QWidget):
    """Per-modality Shapley contributions (bars) and unimodal scores of the last utterance."""

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("last utterance: -")
        self.title.setWordWrap(True)  # "... face +0.87" was cut at the panel's edge
        layout.addWidget(self.title)
        self.bars = pg.PlotWidget(background="w")
        self.bars.setMaximumHeight(170)
        self.bars.getAxis("bottom").setTicks([[(i, LABELS[m]) for i, m in enumerate(MODALITIES)]])
        self.bars.setLabel("left", "contribution")
        self.bars.getAxis("left").enableAutoSIPrefix(False)
        self.bars.addLine(y=0.0, pen=pg.mkPen("#999"))
        self._bar_item = pg.BarGraphItem(
            x=list(range(len(MODALITIES))),
            height=[0.0] * len(MODALITIES),
            width=0.6,
            brushes=[pg.mkBrush(COLORS[m]) for m in MODALITIES],
        )
        self.bars.addItem(self._bar_item)
        layout.addWidget(self.bars)
        self.table = QTableWidget(len(MODALITIES), 3)
        # A contribution is how far this input moved the fused score (Shapley); "alone" is what the model
        # says from this input by itself. A face may read -1.85 alone yet move the score by ~0.
        self.table.setHorizontalHeaderLabels(["moved the score by", "score alone", "present"])
        self.table.horizontalHeaderItem(0).setToolTip(
            "Shapley contribution: how much this input changed the score (they add up to score - baseline)"
        )
        self.table.horizontalHeaderItem(1).setToolTip("the score the model gives this input by itself")
        self.table.setVerticalHeaderLabels([LABELS[m] for m in MODALITIES])
        self.table.setMaximumHeight(125)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        for col in (0, 1):  # wide enough for the header words, not cut to "oved the score b"
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table)

    def show_row(self, row: TimelineRow) -> None:
        parts = " ".join(f"{LABELS[m]} {c:+.2f}" for m, c in by_modality(row.contributions).items())
        self.title.setText(
            f"last utterance {row.start:.1f}-{row.end:.1f} s: score {row.score:+.2f} = "
            f"baseline {row.baseline:+.2f} + {parts}"
        )
        self._bar_item.setOpts(height=list(row.contributions))
        lim = max(0.01, *(abs(c) for c in row.contributions)) * 1.3
        self.bars.setYRange(-lim, lim)
        contributions = by_modality(row.contributions)
        unimodal = by_modality(row.unimodal)
        presence = by_modality(row.presence)
        for i, m in enumerate(MODALITIES):
            cells = (
                f"{contributions[m]:+.4f}",
                f"{unimodal[m]:+.3f}",
                "yes" if presence[m] else "no",
            )
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))

    def values(self) -> dict[str, tuple[float, float]]:
        """(contribution, unimodal) per modality as shown; NaN where a cell is empty."""
        out = {}
        for i, m in enumerate(MODALITIES):
            got = []
            for j in range(2):
                item = self.table.item(i, j)
                got.append(float(item.text()) if item is not None and item.text() else math.nan)
            out[m] = (got[0], got[1])
        return out


class ExpressionView(QLabel):
    """The face's current expression at the vision rate: top class, its probability and the valence, in
    green (positive) or red (negative) beside the face contribution of the last utterance."""

    def __init__(self) -> None:
        super().__init__()
        self.setTextFormat(Qt.TextFormat.RichText)
        self.current: tuple[str, float, float] | None = None
        self.set_face(None)

    def set_face(self, face: FaceResult | None) -> None:
        e = None if face is None else face.expression
        if e is None:
            self.current = None
            self.setText("<span style='color:#777'>face expression: -</span>")
            return
        self.current = (e.label, e.probability, e.valence)
        colour = "#2ca02c" if e.valence > 0.15 else "#d62728" if e.valence < -0.15 else "#555"
        self.setText(
            f"face expression: <b>{html.escape(e.label)}</b> {e.probability:.0%} · "
            f"valence <b style='color:{colour}'>{e.valence:+.2f}</b>"
        )


class PresenceView(QWidget):
    """Face / voice / words: present (green), idle (grey: device fine, nothing detected), absent (red)."""

    def __init__(self) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.labels: dict[str, QLabel] = {}
        self.current: dict[str, str] = {}
        for m in ("vision", "audio", "text"):
            lab = QLabel(LABELS[m])
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setMinimumWidth(70)
            layout.addWidget(lab)
            self.labels[m] = lab
        self.set_states(dict.fromkeys(self.labels, "absent"))

    def set_states(self, states: dict[str, str]) -> None:
        for m, lab in self.labels.items():
            s = states.get(m, "absent")
            if self.current.get(m) != s:
                lab.setStyleSheet(STATE_STYLE[s] + ";border-radius:4px;padding:3px;font-weight:bold")
                lab.setToolTip(f"{LABELS[m]}: {s}")
                self.current[m] = s


def fmt_rate(x: float | None, unit: str) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.1f} {unit}"


def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else math.nan
