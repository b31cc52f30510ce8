"""The timeline contract: one row per scored unit, written as it is scored.

:class:`TimelineWriter` rewrites the CSV and the JSON document atomically (temporary file, fsync,
rename) after every batch of rows: a crash loses nothing already scored, a reader never sees a torn
row or a half-written JSON, and a link planted where a file goes is replaced, never written through. The JSON's ``status`` becomes ``"complete"`` only in :meth:`close`;
that is what ``--resume`` trusts.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.artifact import atomic_write_bytes
from core.config import MODALITIES

log = logging.getLogger(__name__)

FORMAT = "fine-timeline"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TimelineRow:
    """One scored unit. Modality-indexed tuples are in ``MODALITIES`` order (text, audio, vision)."""

    index: int
    kind: str  # "utterance" or "window"
    start: float
    end: float
    text: str
    score: float
    unimodal: tuple[float, float, float]
    contributions: tuple[float, float, float]
    presence: tuple[bool, bool, bool]
    baseline: float
    model_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimelineRow:
        return cls(
            index=int(d["index"]),
            kind=str(d["kind"]),
            start=float(d["start"]),
            end=float(d["end"]),
            text=str(d["text"]),
            score=float(d["score"]),
            unimodal=tuple(float(x) for x in d["unimodal"]),  # type: ignore[arg-type]
            contributions=tuple(float(x) for x in d["contributions"]),  # type: ignore[arg-type]
            presence=tuple(bool(x) for x in d["presence"]),  # type: ignore[arg-type]
            baseline=float(d["baseline"]),
            model_id=str(d["model_id"]),
        )


CSV_COLUMNS: list[str] = [
    "index",
    "kind",
    "start",
    "end",
    "text",
    "score",
    *(f"unimodal_{m}" for m in MODALITIES),
    *(f"contribution_{m}" for m in MODALITIES),
    *(f"present_{m}" for m in MODALITIES),
    "baseline",
    "model_id",
]


def csv_record(row: TimelineRow) -> list[str]:
    return [
        str(row.index),
        row.kind,
        f"{row.start:.3f}",
        f"{row.end:.3f}",
        row.text,
        f"{row.score:.6f}",
        *(f"{x:.6f}" for x in row.unimodal),
        *(f"{x:.6f}" for x in row.contributions),
        *("1" if p else "0" for p in row.presence),
        f"{row.baseline:.6f}",
        row.model_id,
    ]


def _csv_line(values: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


# one atomic writer for the whole project (fsync + rename, ordinary 0666-umask permissions)
atomic_write = atomic_write_bytes


def write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


class TimelineWriter:
    """Writes ``csv_path`` and ``json_path`` atomically after every batch. ``meta`` goes into the JSON
    (input, model id, mode, ...). Use as a context manager or call :meth:`close` yourself."""

    def __init__(self, csv_path: Path, json_path: Path, meta: dict[str, Any]) -> None:
        self.csv_path, self.json_path = csv_path, json_path
        self.meta = dict(meta)
        self.rows: list[TimelineRow] = []
        self._csv: bytearray | None = bytearray(_csv_line(CSV_COLUMNS))
        atomic_write(csv_path, bytes(self._csv))
        self._dump("running")

    def _dump(self, status: str, extra: dict[str, Any] | None = None) -> None:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "status": status,
            **self.meta,
            **(extra or {}),
            "columns": {"modalities": list(MODALITIES)},
            "rows": [r.to_dict() for r in self.rows],
        }
        write_json(self.json_path, doc)

    def append(self, rows: list[TimelineRow]) -> None:
        """Append rows: an atomic rewrite of the CSV, then of the JSON."""
        if not rows:
            return
        assert self._csv is not None, "timeline writer is closed"
        self._csv += b"".join(_csv_line(csv_record(r)) for r in rows)
        atomic_write(self.csv_path, bytes(self._csv))
        self.rows.extend(rows)
        self._dump("running")

    def close(self, status: str = "complete", extra: dict[str, Any] | None = None) -> None:
        if self._csv is not None:
            self._csv = None
            self._dump(status, extra)

    def __enter__(self) -> TimelineWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._csv is not None:
            self._csv = None  # leave the JSON "running": an interrupted input is redone on --resume


def read_timeline(json_path: Path) -> dict[str, Any] | None:
    """The JSON document, or ``None`` when it is missing or unreadable (then the input is redone)."""
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    return doc


def read_csv_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
