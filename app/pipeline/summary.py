"""Summary stage: one line per input (status, reason, score statistics) in ``OUT/summary.csv``,
``OUT/summary.json`` and ``OUT/index.html``, all rewritten atomically after every input."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.pipeline.report import render_index
from app.pipeline.timeline import TimelineRow, atomic_write, write_json
from core.config import MODALITIES

SUMMARY_COLUMNS = [
    "input",
    "key",
    "status",
    "units",
    "duration",
    "mean_score",
    "min_score",
    "max_score",
    *(f"mean_contribution_{m}" for m in MODALITIES),
    "reason",
    "seconds",
]


@dataclass
class InputResult:
    """One line of the summary."""

    input: str
    key: str
    status: str  # complete | partial | no_speech | failed | skipped
    units: int = 0
    duration: float | None = None
    mean_score: float | None = None
    min_score: float | None = None
    max_score: float | None = None
    mean_contribution: tuple[float, ...] | None = None
    reason: str = ""
    seconds: float = 0.0

    def record(self) -> list[str]:
        def num(x: float | None) -> str:
            return "" if x is None else f"{x:.4f}"

        contrib = self.mean_contribution or (None,) * len(MODALITIES)
        return [
            self.input,
            self.key,
            self.status,
            str(self.units),
            num(self.duration),
            num(self.mean_score),
            num(self.min_score),
            num(self.max_score),
            *(num(c) for c in contrib),
            self.reason,
            f"{self.seconds:.2f}",
        ]


def result_from_rows(
    path: Path,
    key: str,
    status: str,
    rows: Sequence[Any],
    duration: float | None,
    reason: str,
    seconds: float,
) -> InputResult:
    scores = [float(r.score if isinstance(r, TimelineRow) else r["score"]) for r in rows]
    contrib = None
    if rows:
        c = np.array([r.contributions if isinstance(r, TimelineRow) else r["contributions"] for r in rows])
        contrib = tuple(float(x) for x in c.mean(axis=0))
    return InputResult(
        input=str(path),
        key=key,
        status=status,
        units=len(rows),
        duration=duration,
        mean_score=float(np.mean(scores)) if scores else None,
        min_score=min(scores) if scores else None,
        max_score=max(scores) if scores else None,
        mean_contribution=contrib,
        reason=reason,
        seconds=seconds,
    )


def result_from_doc(path: Path, key: str, doc: dict[str, Any]) -> InputResult:
    res = result_from_rows(
        path, key, doc["status"], doc.get("rows", []), doc.get("duration"), doc.get("reason", ""), 0
    )
    res.reason = (res.reason + "; " if res.reason else "") + "resumed: not recomputed"
    return res


def write_summary(out: Path, results: Sequence[InputResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    w.writerows(r.record() for r in results)
    atomic_write(out / "summary.csv", buf.getvalue().encode("utf-8"))
    write_json(out / "summary.json", {"inputs": [asdict(r) for r in results]})
    atomic_write(out / "index.html", render_index(out, results).encode("utf-8"))
