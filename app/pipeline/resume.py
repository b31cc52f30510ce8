"""Resume stage: what identifies an input's run (file fingerprint, model, segmentation, Whisper model)
and whether ``OUT/<key>/timeline.json`` already holds a finished result of the same run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.pipeline.config import ScoreConfig
from app.pipeline.timeline import read_timeline

FINISHED = ("complete", "partial", "no_speech", "failed", "skipped")
INTERNAL = "internal error"  # the reason of a bug or a crash, not the input's fault: scored again


def fingerprint(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError:
        return {"path": str(path)}
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def input_meta(path: Path, model_id: str, config: ScoreConfig) -> dict[str, Any]:
    """The header of an input's timeline: what was scored, and how."""
    seg = config.segment
    return {
        "input": str(path),
        "fingerprint": fingerprint(path),
        "model_id": model_id,
        "mode": "window" if seg.window is not None else "utterance",
        "segment": asdict(seg),
        "whisper_model": config.whisper_model,
    }


def finished_doc(timeline_json: Path, want: dict[str, Any]) -> dict[str, Any] | None:
    """The timeline document at ``timeline_json`` when it finished for the run ``want`` describes
    (:func:`input_meta`), else None (missing, interrupted, an internal error, or another run)."""
    doc = read_timeline(timeline_json)
    if doc is None or doc.get("status") not in FINISHED:
        return None
    if str(doc.get("reason", "")).startswith(INTERNAL):  # a bug or a crash, not the input: retry
        return None
    same = all(doc.get(k) == want[k] for k in ("fingerprint", "model_id", "segment", "whisper_model"))
    return doc if same else None
