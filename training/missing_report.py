"""Compare ``fine evaluate --missing`` results of several training variants (docs/ROBUSTNESS.md).

``python -m training.missing_report --out DIR --title T plain=A/missing,B/missing robust=C/missing``

Each ``NAME=DIR[,DIR...]`` is one variant; several folders (e.g. one per training seed) are averaged.
Writes ``DIR/compare.png`` (metric vs missing rate, one line per variant) and ``DIR/compare.md`` (the
areas under the curve, complete-input values, the retention AUC / complete (and the MAE rise AUC − complete),
and the six-condition table per variant), atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.artifact import atomic_write_bytes
from core.errors import FineError
from core.plots import figure_png, pyplot
from training.missing import _fmt, headline_metrics


def load_variant(dirs: list[Path]) -> dict[str, Any]:
    """Mean over ``dirs`` of every number in their ``summary.json`` (rate rows, conditions, AUC)."""
    runs = []
    for d in dirs:
        path = d / "summary.json"
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise FineError(f"{path}: cannot read a 'fine evaluate --missing' summary ({exc})") from None
    first = runs[0]

    def mean(rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        out = []
        for cells in zip(*rows, strict=True):
            row = {
                k: (v if isinstance(v, str) else float(np.mean([c[k] for c in cells])))
                for k, v in cells[0].items()
            }
            out.append(row)
        return out

    return {
        "rate": mean([r["rate"] for r in runs]),
        "modality": mean([r["modality"] for r in runs]),
        "auc": {k: float(np.mean([r["auc"][k] for r in runs])) for k in first["auc"]},
        "auc_runs": [r["auc"] for r in runs],
        "label_range": first["label_range"],
        "runs": len(runs),
    }


def markdown(variants: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> str:
    names = list(variants)
    lines = [
        "| variant | runs | "
        + " | ".join(f"AUC {k}" for k in metrics)
        + " | "
        + " | ".join(f"complete {k}" for k in metrics)
        + " |"
    ]
    lines.append("|---" * (2 + 2 * len(metrics)) + "|")
    for n in names:
        v = variants[n]
        auc = [_fmt(k, v["auc"][k]) for k in metrics]
        if v["runs"] > 1:
            auc = [
                f"{_fmt(k, v['auc'][k])} ({', '.join(_fmt(k, r[k]) for r in v['auc_runs'])})" for k in metrics
            ]
        full = [_fmt(k, v["modality"][-1][k]) for k in metrics]
        lines.append(f"| {n} | {v['runs']} | " + " | ".join(auc) + " | " + " | ".join(full) + " |")
    lines.append("")
    # how much of its complete-input performance a variant keeps over the frame-missing curve
    up = [k for k in metrics if k != "MAE"]
    lines.append(
        "| variant | "
        + " | ".join(f"retention {k} (AUC / complete)" for k in up)
        + (" | MAE rise (AUC − complete) |" if "MAE" in metrics else " |")
    )
    lines.append("|---" * (1 + len(up) + ("MAE" in metrics)) + "|")
    for n in names:
        v = variants[n]
        full = v["modality"][-1]
        cells = [f"{v['auc'][k] / full[k]:.3f}" if full[k] else "–" for k in up]
        if "MAE" in metrics:
            cells.append(f"{v['auc']['MAE'] - full['MAE']:+.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    conds = [r["condition"] for r in variants[names[0]]["modality"]]
    for k in metrics:
        lines.append(f"**{k}** by kept modalities")
        lines.append("")
        lines.append("| variant | " + " | ".join(conds) + " |")
        lines.append("|---" * (1 + len(conds)) + "|")
        for n in names:
            cells = [_fmt(k, r[k]) for r in variants[n]["modality"]]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def compare_png(variants: dict[str, dict[str, Any]], metrics: tuple[str, ...], title: str) -> bytes:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, k in zip(axes[0], metrics, strict=True):
        for name, v in variants.items():
            rates = [r["rate"] for r in v["rate"]]
            ax.plot(
                rates, [r[k] for r in v["rate"]], marker="o", ms=3, label=f"{name} ({_fmt(k, v['auc'][k])})"
            )
        ax.set_xlabel("missing rate")
        ax.set_title(f"{k} (legend: AUC)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig, dpi=72)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.missing_report", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default="")
    p.add_argument(
        "variants", nargs="+", help="NAME=DIR[,DIR...] (folders written by fine evaluate --missing)"
    )
    args = p.parse_args(argv)
    try:
        variants = {}
        for spec in args.variants:
            name, sep, dirs = spec.partition("=")
            if not sep or not dirs:
                raise FineError(f"{spec!r}: expected NAME=DIR[,DIR...]")
            variants[name] = load_variant([Path(d) for d in dirs.split(",")])
    except FineError as exc:
        print(f"missing_report: {exc}", file=sys.stderr)
        return 2
    metrics = headline_metrics(tuple(next(iter(variants.values()))["label_range"]))  # type: ignore[arg-type]
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(variants, metrics)
    atomic_write_bytes(args.out / "compare.md", (text + "\n").encode())
    atomic_write_bytes(args.out / "compare.png", compare_png(variants, metrics, args.title))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
