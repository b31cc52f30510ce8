"""Per-input plot (PNG, matplotlib Agg) and a small self-contained HTML report (PNG inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
import itertools
import logging
import textwrap
from collections.abc import Sequence
from typing import Any

from app.pipeline.timeline import TimelineRow
from core.config import MODALITIES
from core.plots import pyplot as _pyplot

log = logging.getLogger(__name__)

COLORS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#2ca02c"}


def display_spans(rows: Sequence[TimelineRow]) -> list[tuple[float, float]]:
    """Where each unit is drawn: its own span, narrowed to the midpoints between neighbouring unit
    centres where units overlap (sliding windows), so every unit gets its own strip of the time axis."""
    centres = [(r.start + r.end) / 2 for r in rows]
    spans = []
    for i, r in enumerate(rows):
        x0 = max(r.start, (centres[i - 1] + centres[i]) / 2) if i > 0 else r.start
        x1 = min(r.end, (centres[i] + centres[i + 1]) / 2) if i + 1 < len(rows) else r.end
        spans.append((x0, x1))
    return spans


def render_plot(
    rows: Sequence[TimelineRow], title: str, duration: float, label_range: tuple[float, float]
) -> bytes:
    """PNG bytes: sentiment per unit over time (top, with the unit's words) and the per-modality
    Shapley contributions as stacked bars (bottom)."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(11, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]}, dpi=100
    )
    try:
        lo, hi = label_range
        end = max([duration, *(r.end for r in rows)], default=1.0) or 1.0
        ax.axhline(0.0, color="0.6", lw=0.8)
        spans = display_spans(rows)
        overlapping = any(b.start < a.end - 1e-9 for a, b in itertools.pairwise(rows))
        for k, (r, (x0, x1)) in enumerate(zip(rows, spans)):
            ax.axvspan(x0, x1, color="0.92" if k % 2 == 0 else "0.86", lw=0)
            ax.hlines(r.score, x0, x1, color="black", lw=2.5)
            for m, u, p in zip(MODALITIES, r.unimodal, r.presence):
                if p:
                    ax.hlines(u, x0, x1, color=COLORS[m], lw=1, alpha=0.8, linestyles="--")
            if r.text and not overlapping:  # overlapping windows repeat words: the report's table has them
                chars = max(10, int(120 * (x1 - x0) / end))
                label = textwrap.fill(textwrap.shorten(r.text, width=chars * 3), width=chars)
                ax.text(
                    (x0 + x1) / 2,
                    hi - 0.04 * (hi - lo),
                    label,
                    ha="center",
                    va="top",
                    fontsize=7,
                    parse_math=False,
                )
        mids = [(r.start + r.end) / 2 for r in rows]
        ax.plot(mids, [r.score for r in rows], "o-", color="black", ms=4, lw=0.8, label="score (multimodal)")
        for m in MODALITIES:
            ax.plot([], [], "--", color=COLORS[m], label=f"{m} head")
        ax.set_ylim(lo, hi)
        ax.set_xlim(0, end)
        ax.set_ylabel("sentiment")
        ax.set_title(title, fontsize=10, parse_math=False)  # "$5" in a name or a word is text, not TeX
        ax.legend(loc="lower right", fontsize=7, ncol=4)
        ax.grid(axis="y", alpha=0.3)

        widths = [max(x1 - x0, 1e-3) * 0.9 for x0, x1 in spans]
        mids = [(x0 + x1) / 2 for x0, x1 in spans]
        pos = [0.0] * len(rows)
        neg = [0.0] * len(rows)
        for i_m, m in enumerate(MODALITIES):
            vals = [r.contributions[i_m] for r in rows]
            bottoms = [p if v >= 0 else n for v, p, n in zip(vals, pos, neg)]
            bx.bar(mids, vals, width=widths, bottom=bottoms, color=COLORS[m], label=m, alpha=0.85)
            pos = [p + max(v, 0.0) for p, v in zip(pos, vals)]
            neg = [n + min(v, 0.0) for n, v in zip(neg, vals)]
        bx.axhline(0.0, color="0.4", lw=0.8)
        top, bottom = max(pos, default=0.0), min(neg, default=0.0)
        room = max(top - bottom, 1e-6)
        bx.set_ylim(bottom - 0.05 * room * (bottom < 0), top + 0.3 * room)  # headroom for the legend
        bx.set_ylabel("contribution\n(Shapley)")
        bx.set_xlabel("time (s)")
        bx.legend(loc="upper right", fontsize=7, ncol=3)
        bx.grid(axis="y", alpha=0.3)
        if not rows:
            ax.text(end / 2, 0, "no scored units", ha="center", va="center")
        fig.subplots_adjust(
            left=0.08, right=0.98, top=0.94, bottom=0.09, hspace=0.08
        )  # not tight_layout: ~2x the render
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def render_html(meta: dict[str, Any], rows: Sequence[TimelineRow], png: bytes | None) -> str:
    """A single HTML page: header facts, the plot inlined, one table row per unit."""
    esc = html.escape
    facts = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in meta.items() if v not in (None, "")
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ["#", "start", "end", "text", "score", *(f"{m[0].upper()} head" for m in MODALITIES)]
        + [f"φ {m}" for m in MODALITIES]
        + ["present"]
    )
    body = []
    for r in rows:
        present = "".join(m[0].upper() if p else "·" for m, p in zip(MODALITIES, r.presence))
        cells = [str(r.index), f"{r.start:.2f}", f"{r.end:.2f}", esc(r.text), f"{r.score:+.3f}"]
        heads = [f"{x:+.3f}" if p else "–" for x, p in zip(r.unimodal, r.presence)]  # absent: no evidence
        cells += heads + [f"{x:+.3f}" for x in r.contributions] + [present]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    img = ""
    if png is not None:
        img = f'<img alt="sentiment over time" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    title = esc(str(meta.get("input", "timeline")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - sentiment</title>
<style>
body{{font-family:sans-serif;margin:1.5em;color:#222}} img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}
th{{background:#f3f3f3}}
</style></head><body>
<h1>{title}</h1>
<table>{facts}</table>
{img}
<p>score: multimodal sentiment; T/A/V head: unimodal heads; φ: Shapley contribution of each modality
(they add up to score minus the no-modality baseline); present: modalities the model saw.</p>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""
