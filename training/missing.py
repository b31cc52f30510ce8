"""``fine evaluate --missing``: the two standard missing-modality protocols (docs/METHOD.md §6).

(a) **Random frame missing.** For each rate r in 0.0, 0.1, ..., 0.9 and each seed (1111, 1112, 1113),
    every valid step of every modality goes missing with probability r: audio/vision frames are zeroed
    within their length (``--frame-fill mask`` masks them out instead), text token ids become [UNK]
    when the model has its text encoder in the graph ([CLS]/[SEP] kept), pre-computed text embeddings
    are masked out. Draws are per sample (seeded by ``(seed, sample index, modality)``), so they do not
    depend on batching. Metrics are mean ± std over the seeds; the *area under the curve* is the
    trapezoid of each metric over the rates, divided by the rate span (so it reads on the metric's own
    scale: the average over the curve).
(b) **Whole-modality missing.** The six conditions {T}, {A}, {V}, {T,A}, {T,V}, {A,V} (the modalities
    kept) and the complete input: the others are marked absent through the presence flags.

Outputs in ``--missing-out`` (default ``RUN/missing`` beside ``RUN/model``): ``missing_rate.csv``,
``missing_modality.csv``, ``missing_rate.png`` and ``summary.json`` (written atomically), and the two
tables printed. With ``--cv K`` the model path is a ``fine train --cv K`` run directory: each fold's
model predicts its own test fold and the metrics are computed on the pooled out-of-fold predictions.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.artifact import atomic_write_bytes
from core.config import MODALITIES, MODALITY_LETTERS
from core.errors import FineError
from core.plots import figure_png, pyplot
from training.data import Dataset, batch_order, collate, grouped_folds, pool_splits
from training.evaluation import eval_splits
from training.metrics import metrics_for
from training.registry import load_any_model
from training.robust import drop_frames
from training.textprep import quiet_transformers

log = logging.getLogger(__name__)

RATES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(10))
SEEDS: tuple[int, ...] = (1111, 1112, 1113)
CONDITIONS: tuple[tuple[str, ...], ...] = (
    ("text",),
    ("audio",),
    ("vision",),
    ("text", "audio"),
    ("text", "vision"),
    ("audio", "vision"),
    MODALITIES,
)


def condition_name(keep: tuple[str, ...]) -> str:
    return "{" + ",".join(MODALITY_LETTERS[m] for m in keep) + "}"


@dataclass(frozen=True)
class Corruption:
    """What is done to the input: frames missing at ``rate`` (seeded), modalities outside ``keep`` absent."""

    rate: float = 0.0
    seed: int = 0
    keep: tuple[str, ...] = MODALITIES
    fill: str = "zero"
    text_fill: str = "unk"  # token ids of an in-graph text encoder: [UNK] or masked out


def _frame_drops(lengths: dict[str, list[int]], t: dict[str, int], idx: np.ndarray, c: Corruption) -> dict:
    drops = {}
    for i_m, m in enumerate(MODALITIES):
        d = np.zeros((len(idx), t[m]), dtype=bool)
        for row, (i, n) in enumerate(zip(idx, lengths[m], strict=True)):
            if n:
                d[row, :n] = np.random.default_rng([c.seed, int(i), i_m]).random(n) < c.rate
        drops[m] = torch.from_numpy(d)
    return drops


@torch.no_grad()
def predict_corrupted(
    model: nn.Module, data: Dataset, c: Corruption, unk_id: int | None = None, batch_size: int = 64
) -> np.ndarray:
    """The model's scores for every sample of ``data`` (in order) under corruption ``c``."""
    model.eval()
    preds = np.zeros(len(data), dtype=np.float64)
    keep = torch.tensor([m in c.keep for m in MODALITIES])
    for idx in batch_order(data, batch_size, False, bucket=True):
        batch = collate([data.samples[i] for i in idx], data.feature_dims)
        if c.rate > 0:
            lengths = {m: [int(n) for n in batch.masks[m].sum(1)] for m in MODALITIES}
            t = {m: batch.masks[m].shape[1] for m in MODALITIES}
            batch = drop_frames(batch, _frame_drops(lengths, t, idx, c), c.fill, unk_id, c.text_fill)
        batch = batch.with_presence(batch.presence & keep[None, :])
        preds[idx] = model(batch).score.float().cpu().numpy()
    return preds


@dataclass
class Fold:
    """A model and the data it is evaluated on (one fold of a CV run, or the whole split)."""

    model: nn.Module
    data: Dataset
    unk_id: int | None


def evaluate_folds(folds: list[Fold], c: Corruption, label_range: tuple[float, float], bs: int = 64) -> dict:
    preds = [predict_corrupted(f.model, f.data, c, f.unk_id, bs) for f in folds]
    labels = [f.data.labels() for f in folds]
    return metrics_for(label_range, np.concatenate(preds), np.concatenate(labels))


def area_under_curve(rates: list[float], values: list[float]) -> float:
    """Trapezoid of ``values`` over ``rates`` divided by the rate span (the curve's average level)."""
    r, v = np.asarray(rates, dtype=np.float64), np.asarray(values, dtype=np.float64)
    span = r[-1] - r[0]
    area = float(np.sum((v[1:] + v[:-1]) * np.diff(r)) / 2.0)
    return area / span if span > 0 else float(v[0])


def run_protocols(
    folds: list[Fold],
    label_range: tuple[float, float],
    rates: tuple[float, ...] = RATES,
    seeds: tuple[int, ...] = SEEDS,
    fill: str = "zero",
    batch_size: int = 64,
    text_fill: str = "unk",
) -> dict[str, Any]:
    """Both protocols: ``{"rate": [...], "modality": [...], "auc": {...}}``."""
    rate_rows = []
    for r in rates:
        per_seed = [
            evaluate_folds(folds, Corruption(r, s, MODALITIES, fill, text_fill), label_range, batch_size)
            for s in seeds
        ]
        row: dict[str, Any] = {"rate": r}
        for k in per_seed[0]:
            v = np.array([m[k] for m in per_seed])
            row[k] = float(v.mean())
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rate_rows.append(row)
        log.debug("rate %.1f: %s", r, {k: round(v, 4) for k, v in row.items()})
    cond_rows = []
    for keep in CONDITIONS:
        m = evaluate_folds(folds, Corruption(0.0, 0, keep, fill, text_fill), label_range, batch_size)
        cond_rows.append({"condition": condition_name(keep), **m})
    metric_names = [k for k in rate_rows[0] if k != "rate" and not k.endswith("_std")]
    auc = {
        k: area_under_curve([r["rate"] for r in rate_rows], [r[k] for r in rate_rows]) for k in metric_names
    }
    return {
        "rate": rate_rows,
        "modality": cond_rows,
        "auc": auc,
        "seeds": list(seeds),
        "fill": fill,
        "text_fill": text_fill,
    }


# ---------------------------------------------------------------------------------------------------
# outputs


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue().encode()


def _fmt(k: str, v: float) -> str:
    return f"{v:.3f}" if k in ("MAE", "Corr") else f"{100 * v:.1f}"


def format_tables(result: dict[str, Any], metrics: tuple[str, ...]) -> str:
    """The two protocols as plain-text tables (percent for accuracies and F1, 3 decimals for MAE/Corr)."""
    ms = [k for k in metrics if k in result["auc"]]
    lines = ["random frame missing (mean ± std over seeds " + ", ".join(map(str, result["seeds"])) + ")"]
    lines.append("rate  " + "  ".join(f"{k:>13}" for k in ms))
    for row in result["rate"]:
        cells = [f"{_fmt(k, row[k]):>6}±{_fmt(k, row[k + '_std']):<6}" for k in ms]
        lines.append(f"{row['rate']:.1f}   " + "  ".join(cells))
    lines.append("AUC   " + "  ".join(f"{_fmt(k, result['auc'][k]):>13}" for k in ms))
    lines.append("")
    lines.append("whole-modality missing (modalities kept)")
    lines.append("condition  " + "  ".join(f"{k:>10}" for k in ms))
    for row in result["modality"]:
        lines.append(f"{row['condition']:<9}  " + "  ".join(f"{_fmt(k, row[k]):>10}" for k in ms))
    return "\n".join(lines)


def plot_png(result: dict[str, Any], metrics: tuple[str, ...], title: str) -> bytes:
    plt = pyplot()
    ms = [k for k in metrics if k in result["auc"]]
    fig, axes = plt.subplots(1, len(ms), figsize=(4 * len(ms), 3.2), squeeze=False)
    rates = [r["rate"] for r in result["rate"]]
    for ax, k in zip(axes[0], ms, strict=True):
        mean = np.array([r[k] for r in result["rate"]])
        std = np.array([r[f"{k}_std"] for r in result["rate"]])
        ax.plot(rates, mean, marker="o")
        ax.fill_between(rates, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("missing rate")
        ax.set_title(f"{k} (AUC {_fmt(k, result['auc'][k])})")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig, dpi=100)


def write_outputs(result: dict[str, Any], out: Path, metrics: tuple[str, ...], title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "missing_rate.csv", _csv_bytes(result["rate"]))
    atomic_write_bytes(out / "missing_modality.csv", _csv_bytes(result["modality"]))
    atomic_write_bytes(out / "missing_rate.png", plot_png(result, metrics, title))
    atomic_write_bytes(out / "summary.json", (json.dumps(result, indent=2) + "\n").encode())


def headline_metrics(label_range: tuple[float, float]) -> tuple[str, ...]:
    if label_range[1] <= 1.0:  # CH-SIMS scale
        return ("Acc_2", "F1", "MAE", "Corr")
    return ("Non0_acc_2", "Non0_F1", "MAE", "Corr")


# ---------------------------------------------------------------------------------------------------
# fine evaluate --missing


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("missing-modality protocols (--missing)")
    g.add_argument("--missing", action="store_true", help="run both missing-modality protocols")
    g.add_argument("--missing-out", type=Path, help="output folder (default: RUN/missing beside RUN/model)")
    g.add_argument(
        "--frame-fill", choices=("zero", "mask"), default="zero", help="missing frames: zeroed or masked"
    )
    g.add_argument(
        "--text-fill",
        choices=("unk", "mask"),
        default="unk",
        help="missing tokens of an in-graph text encoder: [UNK] (the protocol) or masked out (lost words)",
    )
    g.add_argument(
        "--cv", type=int, default=0, help="--model is a 'fine train --cv K' run: pool its K test folds"
    )


def _label_range(model: nn.Module) -> tuple[float, float]:
    cfg: Any = model.config  # FineConfig or MMIMConfig
    lo, hi = cfg.label_range
    return float(lo), float(hi)


def _unk_id(model: nn.Module) -> int | None:
    cfg: Any = model.config
    enc = cfg.text_encoder
    if not enc.source:
        return None
    from core.text_encoder import load_tokenizer

    return int(load_tokenizer(enc).unk_token_id)


def _cv_folds(args: argparse.Namespace) -> tuple[list[Fold], tuple[float, float]]:
    paths = [args.model / f"fold-{k}" / "model" for k in range(args.cv)]
    absent = [p for p in paths if not (p / "config.json").is_file()]
    if absent:
        raise FineError(
            f"--model {args.model} --cv {args.cv}: {absent[0]} not found; pass the run directory of "
            f"'fine train --cv {args.cv}' (one seed per fold)"
        )
    models = [load_any_model(p) for p in paths]
    ds = pool_splits(eval_splits(args, models[0], None))
    idx = grouped_folds(ds.samples, args.cv)
    unk = _unk_id(models[0])
    folds = [Fold(m, ds.subset(idx[k], f"fold-{k}"), unk) for k, m in enumerate(models)]
    return folds, _label_range(models[0])


def run(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    if args.cv:
        if args.cv < 2:
            raise FineError(f"--cv must be >= 2, got {args.cv}")
        folds, label_range = _cv_folds(args)
        default_out = args.model / "missing"
    else:
        model = load_any_model(args.model)
        split = eval_splits(args, model, [args.split])[args.split]
        folds, label_range = [Fold(model, split, _unk_id(model))], _label_range(model)
        default_out = args.model.parent / "missing"
    result = run_protocols(
        folds, label_range, fill=args.frame_fill, batch_size=args.batch_size, text_fill=args.text_fill
    )
    result["model"], result["data"] = str(args.model), args.data
    result["n"] = sum(len(f.data) for f in folds)
    result["label_range"] = list(label_range)
    out = args.missing_out or default_out
    metrics = headline_metrics(label_range)
    write_outputs(result, out, metrics, f"{args.model} on {args.data} (n={result['n']})")
    return result, out


def main(args: argparse.Namespace) -> int:
    result, out = run(args)
    print(format_tables(result, headline_metrics(tuple(result["label_range"]))))  # type: ignore[arg-type]
    print(f"wrote {out}/missing_rate.csv, missing_modality.csv, missing_rate.png, summary.json")
    return 0
