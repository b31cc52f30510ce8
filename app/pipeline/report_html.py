"""``report.html`` of one input and ``index.html`` across a batch: what a user-study researcher reads.

The page is self-contained (the plot inlined, no script or style from elsewhere) and sits beside its
``timeline.csv`` / ``timeline.json``, which it links; the recording plays in the page and every utterance's
time seeks it. Words, voice and face are the names used everywhere (the code's text, audio, vision)."""

from __future__ import annotations

import base64
import html
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.pipeline.timeline import TimelineRow
from core.config import MODALITIES, by_modality

# One vocabulary everywhere a person reads (reports, the app): words, voice, face (the code's text/audio/vision).
LABELS = {"text": "words", "audio": "voice", "vision": "face"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
CARD_CAVEAT_KEYS = ("caveats", "limitations", "training_data")

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}
img{max-width:100%} video{max-width:640px;width:100%} audio{width:100%;max-width:640px}
table{border-collapse:collapse;font-size:13px;margin:0.6em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.words{max-width:28em;word-break:normal;overflow-wrap:normal;hyphens:none}
.pos{color:#2ca02c;font-weight:bold} .neg{color:#d62728;font-weight:bold} .neu{color:#777}
td.when{white-space:nowrap} a.seek{cursor:pointer;text-decoration:underline;color:#1f5fa8}
.card{background:#fafafa;border-left:4px solid #bbb;padding:0.4em 1em;margin:0.6em 0;font-size:13px}
.summary td{font-size:14px} nav a{margin-right:1em}
"""

SEEK_SCRIPT = """<script>
function seek(t){var m=document.getElementById('media'); if(!m) return; m.currentTime=t; m.play();}
</script>"""


def sign_class(x: float, eps: float = 0.05) -> str:
    return "pos" if x > eps else "neg" if x < -eps else "neu"


def mmss(t: float, tenths: bool = False) -> str:
    t = max(0.0, float(t))
    whole = int(t)
    h, rem = divmod(whole, 3600)
    m, sec = divmod(rem, 60)
    frac = f".{int((t - whole) * 10)}" if tenths else ""
    return f"{h}:{m:02d}:{sec:02d}{frac}" if h else f"{m}:{sec:02d}{frac}"


def summary_numbers(rows: Sequence[TimelineRow]) -> dict[str, Any]:
    """What the page's summary table shows (also what index.html lists per input)."""
    if not rows:
        return {"units": 0}
    scores = [r.score for r in rows]
    n = len(rows)
    return {
        "units": n,
        "spoken": sum(r.end - r.start for r in rows),
        "mean": statistics.fmean(scores),
        "min": min(scores),
        "max": max(scores),
        "positive": sum(s > 0.05 for s in scores) / n,
        "negative": sum(s < -0.05 for s in scores) / n,
        "baseline": statistics.fmean(r.baseline for r in rows),
        "contribution": [statistics.fmean(by_modality(r.contributions)[m] for r in rows) for m in MODALITIES],
        "present": [sum(by_modality(r.presence)[m] for r in rows) / n for m in MODALITIES],
    }


def read_card(model: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The model card of an artifact folder or an ``.onnx`` (empty when it cannot be read)."""
    if model is None:
        return {}
    try:
        from core.artifact import read_config
        from export.runtime import find_model_files

        files = find_model_files(model)
        if files.artifact is not None:
            return dict(read_config(files.artifact).get("card") or {})
        if files.onnx is not None:
            import json

            from export.metadata import read_metadata

            return dict(json.loads(read_metadata(files.onnx).get("card", "{}")))
    except Exception:  # a page without the card beats no page
        return {}
    return {}


def media_link(media: str | os.PathLike[str] | None, page_dir: Path | None) -> str | None:
    """The recording as the page reaches it: relative to the page's folder when possible."""
    if media is None:
        return None
    path = Path(media).resolve()
    if page_dir is not None:
        try:
            return Path(os.path.relpath(path, page_dir.resolve())).as_posix()
        except ValueError:  # another drive (Windows)
            pass
    return path.as_uri()


def _card_html(card: dict[str, Any]) -> str:
    esc = html.escape
    if not card:
        return "<p class='card'>The model has no card: read its scores with care.</p>"
    parts = [f"<b>{esc(str(card.get('name', 'model')))}</b>"]
    if card.get("description"):
        parts.append(f"<p>{esc(str(card['description']))}</p>")
    for key in CARD_CAVEAT_KEYS:
        value = card.get(key)
        if not value:
            continue
        title = "What each input was learned from" if key == "training_data" else key.capitalize()
        if isinstance(value, dict):
            items = "".join(
                f"<li><b>{esc(str(LABELS.get(k, k)))}</b>: {esc(str(v))}</li>" for k, v in value.items()
            )
            parts.append(f"<p>{title}:</p><ul>{items}</ul>")
        elif isinstance(value, list):
            parts.append(f"<p>{title}:</p><ul>{''.join(f'<li>{esc(str(v))}</li>' for v in value)}</ul>")
        else:
            parts.append(f"<p>{title}: {esc(str(value))}</p>")
    return "<div class='card'>" + "".join(parts) + "</div>"


def _summary_html(s: dict[str, Any], duration: Any) -> str:
    if not s.get("units"):
        return "<p>No scored utterances.</p>"
    cells = [
        ("utterances scored", f"{s['units']}"),
        ("duration", mmss(float(duration)) if duration not in (None, "") else "–"),
        ("time with speech scored", mmss(s["spoken"])),
        ("mean score", f"<span class='{sign_class(s['mean'])}'>{s['mean']:+.2f}</span>"),
        ("range", f"{s['min']:+.2f} … {s['max']:+.2f}"),
        ("positive / negative utterances", f"{s['positive']:.0%} / {s['negative']:.0%}"),
        (
            "mean contribution words / voice / face",
            " / ".join(f"<span class='{sign_class(c)}'>{c:+.2f}</span>" for c in s["contribution"]),
        ),
        ("present in words / voice / face", " / ".join(f"{p:.0%}" for p in s["present"])),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in cells)
    return f"<table class='summary'>{body}</table>"


def render_html(
    meta: dict[str, Any],
    rows: Sequence[TimelineRow],
    png: bytes | None,
    card: dict[str, Any] | None = None,
    media: str | os.PathLike[str] | None = None,
    page_dir: Path | None = None,
) -> str:
    """The report of one input: summary, baseline, the model card's caveats, the recording with
    click-to-seek, the plot, one table row per utterance, links to the timeline files and the index."""
    esc = html.escape
    s = summary_numbers(rows)
    title = esc(Path(str(meta.get("input", "timeline"))).name)
    facts = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
        for k, v in meta.items()
        if v not in (None, "") and k not in ("duration", "units")
    )
    link = media_link(media, page_dir)
    player = ""
    if link is not None:
        tag = "video" if Path(str(media)).suffix.lower() in VIDEO_SUFFIXES else "audio"
        player = f'<{tag} id="media" controls preload="metadata" src="{esc(link)}"></{tag}>'
    baseline = ""
    if rows:
        b = s["baseline"]
        baseline = (
            f"<p><b>Baseline {b:+.3f}</b>: the model's score with no input at all (no words, no voice, no "
            "face). Every score is this baseline plus the three contributions (Shapley values): "
            "<i>score = baseline + words + voice + face</i>. A contribution is how far that input moved "
            "this utterance's score; “alone” is the score the model gives that input by itself.</p>"
        )
    img = ""
    if png is not None:
        img = f'<img alt="sentiment over time" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    head = ["#", "time", "words (transcript)", "score"]
    head += [f"{LABELS[m]} contribution" for m in MODALITIES] + [f"{LABELS[m]} alone" for m in MODALITIES]
    head += ["present"]
    body = []
    for r in rows:
        present = ", ".join(LABELS[m] for m, p in by_modality(r.presence).items() if p) or "none"
        when = f"{mmss(r.start, True)}–{mmss(r.end, True)}"
        seek = f'<a class="seek" onclick="seek({r.start:.2f})" title="play from here">{when}</a>'
        cells = [
            f"<td class='num'>{r.index}</td>",
            f"<td class='when'>{seek}</td>",
            f"<td class='words'>{esc(r.text)}</td>",
            f"<td class='num {sign_class(r.score)}'>{r.score:+.3f}</td>",
        ]
        cells += [f"<td class='num {sign_class(c)}'>{c:+.3f}</td>" for c in r.contributions]
        cells += [
            f"<td class='num'>{u:+.3f}</td>" if p else "<td>–</td>" for u, p in zip(r.unimodal, r.presence)
        ]
        cells.append(f"<td>{present}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    th = "".join(f"<th>{h}</th>" for h in head)
    nav = (
        '<nav><a href="../index.html">all inputs (index.html)</a><a href="timeline.csv">timeline.csv</a>'
        '<a href="timeline.json">timeline.json</a><a href="plot.png">plot.png</a></nav>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - sentiment</title>
<style>{STYLE}</style>{SEEK_SCRIPT}</head><body>
{nav}
<h1>{title}</h1>
<h2>Summary</h2>
{_summary_html(s, meta.get("duration"))}
{baseline}
<h2>Model and its caveats</h2>
{_card_html(card or {})}
<h2>Recording</h2>
{player or "<p>(the recording is not reachable from this page)</p>"}
<p>Click an utterance's time in the table to play the recording from there.</p>
{img}
<h2>Utterances</h2>
<p>Scores from −3 (very negative) to +3 (very positive); green positive, red negative. Times are m:ss.</p>
<table><tr>{th}</tr>
{chr(10).join(body)}
</table>
<h2>Run</h2>
<table>{facts}</table>
</body></html>
"""


def render_index(out: Path, results: Sequence[Any]) -> str:
    """``index.html`` across all inputs of a batch: status, summary numbers and links per input."""
    from app.pipeline.timeline import read_timeline

    esc = html.escape
    lines = []
    for r in results:
        folder = out / r.key
        doc = read_timeline(folder / "timeline.json") or {}
        rows = [TimelineRow.from_dict(d) for d in doc.get("rows", [])]
        s = summary_numbers(rows)
        name = esc(Path(str(r.input)).name)
        report = (
            f'<a href="{esc(r.key)}/report.html">{name}</a>' if (folder / "report.html").is_file() else name
        )
        csv = f'<a href="{esc(r.key)}/timeline.csv">csv</a>' if (folder / "timeline.csv").is_file() else ""
        mean = f"<span class='{sign_class(s['mean'])}'>{s['mean']:+.2f}</span>" if rows else "–"
        contrib = " / ".join(f"{c:+.2f}" for c in s["contribution"]) if rows else "–"
        dur = mmss(r.duration) if getattr(r, "duration", None) else "–"
        lines.append(
            f"<tr><td>{report}</td><td>{esc(r.status)}</td><td class='num'>{dur}</td>"
            f"<td class='num'>{s['units']}</td><td class='num'>{mean}</td><td class='num'>{contrib}</td>"
            f"<td>{csv}</td><td>{esc(r.reason or '')}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in [
            "input",
            "status",
            "duration",
            "utterances",
            "mean score",
            "mean contribution words / voice / face",
            "timeline",
            "notes",
        ]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fine score - {len(results)} inputs</title>
<style>{STYLE}</style></head><body>
<h1>{len(results)} inputs</h1>
<p><a href="summary.csv">summary.csv</a> · <a href="summary.json">summary.json</a></p>
<table><tr>{head}</tr>
{chr(10).join(lines)}
</table></body></html>
"""
