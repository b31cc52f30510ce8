"""``fine score --json``: one JSON document on stdout for pipelines (the human lines go to stderr)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from app.pipeline.timeline import read_timeline


def score_document(out: Path, results: Sequence[Any]) -> dict[str, Any]:
    """Every input's summary line, its files and its timeline rows (as in ``timeline.json``)."""
    inputs = []
    for r in results:
        folder = out / r.key
        doc = read_timeline(folder / "timeline.json") or {}
        files = {
            name: str(folder / name)
            for name in ("timeline.csv", "timeline.json", "plot.png", "report.html")
            if (folder / name).is_file()
        }
        inputs.append({**asdict(r), "files": files, "rows": doc.get("rows", [])})
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "format": "fine-score",
        "format_version": 1,
        "out": str(out),
        "summary": str(out / "summary.csv"),
        "index": str(out / "index.html"),
        "counts": counts,
        "inputs": inputs,
    }


def emit(out: Path, results: Sequence[Any], stream: TextIO | None = None) -> None:
    json.dump(score_document(out, results), stream or sys.stdout, indent=1)
    (stream or sys.stdout).write("\n")
