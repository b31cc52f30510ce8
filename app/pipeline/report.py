"""Per-input plot (PNG, matplotlib Agg) and a small self-contained HTML report (PNG inlined as base64)."""

from __future__ import annotations

import itertools
import logging
import textwrap
from collections.abc import Sequence

from app.pipeline.report_html import LABELS, mmss, render_html, render_index
from app.pipeline.timeline import TimelineRow
from core.config import MODALITIES, by_modality
from core.plots import figure_png
from core.plots import pyplot as _pyplot

log = logging.getLogger(__name__)

__all__ = ["render_html", "render_index", "render_plot"]

COLORS = {"text": "#1f77b4", "audio": "#ff7f0e", "vision": "#9467bd"}  # not green/red: those show sign
POSITIVE, NEGATIVE, NEUTRAL = "#2ca02c", "#d62728", "#777777"
GAP = 0.25  # a pause longer than this between units is a silence: the score line is not drawn across it


def sign_colour(x: float, eps: float = 0.05) -> str:
    return POSITIVE if x > eps else NEGATIVE if x < -eps else NEUTRAL


def wrap_words(text: str, width: int, max_lines: int = 3) -> str:
    """Wrap at spaces only (never inside a word), at most ``max_lines`` lines, an ellipsis when cut."""
    lines = textwrap.wrap(text, width=max(width, 4), break_long_words=False, break_on_hyphens=False)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1] + " …"
    return "\n".join(lines)


def _broken_line(rows: Sequence[TimelineRow]) -> tuple[list[float], list[float]]:
    """Unit centres and scores with a NaN between units separated by more than GAP (no line over silence)."""
    xs: list[float] = []
    ys: list[float] = []
    for k, r in enumerate(rows):
        if k and r.start - rows[k - 1].end > GAP:
            xs.append(float("nan"))
            ys.append(float("nan"))
        xs.append((r.start + r.end) / 2)
        ys.append(r.score)
    return xs, ys


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
    from matplotlib.ticker import FuncFormatter

    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(11, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]}, dpi=100
    )
    try:
        lo, hi = label_range
        end = max([duration, *(r.end for r in rows)], default=1.0) or 1.0
        ax.axhline(0.0, color="0.6", lw=0.8)
        spans = display_spans(rows)
        overlapping = any(b.start < a.end - 1e-9 for a, b in itertools.pairwise(rows))
        for r, (x0, x1) in zip(rows, spans):
            ax.axvspan(x0, x1, color=sign_colour(r.score), alpha=0.12, lw=0)  # shading shows the sign
            ax.hlines(r.score, x0, x1, color="black", lw=2.5)
            unimodal, present = by_modality(r.unimodal), by_modality(r.presence)
            for m in MODALITIES:
                if present[m]:
                    ax.hlines(unimodal[m], x0, x1, color=COLORS[m], lw=1, alpha=0.8, linestyles="--")
            if r.text and not overlapping:  # overlapping windows repeat words: the report's table has them
                chars = max(10, int(120 * (x1 - x0) / end))
                label = wrap_words(r.text, chars)
                ax.text(
                    (x0 + x1) / 2,
                    hi - 0.04 * (hi - lo),
                    label,
                    ha="center",
                    va="top",
                    fontsize=7,
                    parse_math=False,
                )
        xs, ys = _broken_line(rows)
        ax.plot(xs, ys, "-", color="black", lw=0.8, label="score (words + voice + face)")
        ax.scatter(
            [(r.start + r.end) / 2 for r in rows],
            [r.score for r in rows],
            c=[sign_colour(r.score) for r in rows],
            s=28,
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )
        for m in MODALITIES:
            ax.plot([], [], "--", color=COLORS[m], label=f"{LABELS[m]} alone")
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
        for m in MODALITIES:
            vals = [by_modality(r.contributions)[m] for r in rows]
            bottoms = [p if v >= 0 else n for v, p, n in zip(vals, pos, neg)]
            bx.bar(mids, vals, width=widths, bottom=bottoms, color=COLORS[m], label=LABELS[m], alpha=0.85)
            pos = [p + max(v, 0.0) for p, v in zip(pos, vals)]
            neg = [n + min(v, 0.0) for n, v in zip(neg, vals)]
        bx.axhline(0.0, color="0.4", lw=0.8)
        top, bottom = max(pos, default=0.0), min(neg, default=0.0)
        room = max(top - bottom, 1e-6)
        bx.set_ylim(bottom - 0.05 * room * (bottom < 0), top + 0.3 * room)  # headroom for the legend
        bx.set_ylabel("contribution\n(Shapley)")
        bx.set_xlabel("time (m:ss)")
        bx.xaxis.set_major_formatter(FuncFormatter(lambda t, _: mmss(t)))
        bx.legend(loc="upper right", fontsize=7, ncol=3)
        bx.grid(axis="y", alpha=0.3)
        if not rows:
            ax.text(end / 2, 0, "no scored units", ha="center", va="center")
        fig.subplots_adjust(
            left=0.08, right=0.98, top=0.94, bottom=0.09, hspace=0.08
        )  # not tight_layout: ~2x the render
    except BaseException:
        plt.close(fig)
        raise
    return figure_png(fig)
