"""Evaluating a trained model (``fine evaluate``): the data in the form the model takes
(``training.evalinput``), metrics per split with the input-blind baseline beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from core.config import MODALITIES
from core.errors import FineError, check
from training import datasets
from training.data import Dataset, restrict_modalities
from training.metrics import metrics_for
from training.registry import load_any_model
from training.textprep import quiet_transformers, tokenize_splits
from training.trainer import predict


class EvalData(Protocol):
    """What selects the data: ``data`` (SCHEME:ARG), ``modalities`` (``None``: every one the data carries)
    and ``batch_size`` (of raw-text encoding). :class:`Evaluation` is one; so is an argparse namespace."""

    data: str
    modalities: tuple[str, ...] | None
    batch_size: int


@dataclass(frozen=True)
class Evaluation:
    """``fine evaluate``: ``model`` (a directory) on ``split`` (a name, or ``all``) of ``data``."""

    model: Path
    data: str
    split: str = "test"
    modalities: tuple[str, ...] | None = None
    batch_size: int = 64
    threads: int | None = None

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(
            self.modalities is None or all(m in MODALITIES for m in self.modalities),
            f"modalities must be among {list(MODALITIES)}",
        )


def eval_splits(request: EvalData, model: torch.nn.Module, names: list[str] | None) -> dict[str, Dataset]:
    """Load ``request.data`` for ``model`` (see :func:`load_eval_data`); ``names=None`` keeps every split."""
    return load_eval_data(request, model, names)[0]


def load_eval_data(
    request: EvalData, model: torch.nn.Module, names: list[str] | None
) -> tuple[dict[str, Dataset], np.ndarray | None, tuple[str, ...]]:
    """``request.data`` in the form ``model`` takes (``training.evalinput``): the modalities used (the
    data's, or ``modalities``, which the data must carry), raw text through the model's own text encoder,
    every used modality checked for form and width. Returns the splits, the train labels (for the
    constant baseline; ``None`` without a train split) and the modalities used."""
    from training import evalinput

    spec = request.data
    splits = datasets.load(spec)
    names = list(splits) if names is None else names
    missing = [n for n in names if n not in splits]
    if missing:
        raise FineError(f"--data {spec} has no split {missing[0]!r}; it has {sorted(splits)}")
    train = splits.get("train")
    train_labels = train.labels() if train is not None and len(train) else None
    chosen = {n: splits[n] for n in names}
    used = evalinput.used_modalities(chosen, getattr(request, "modalities", None), spec)
    restrict_modalities(chosen, used)
    cfg: Any = model.config
    enc_cfg = cfg.text_encoder
    if "text" in used:
        quiet_transformers()
        if enc_cfg.source:
            tokenize_splits(chosen, enc_cfg, cfg.input_dims["text"])
        else:
            model_dir = getattr(request, "model", None)
            evalinput.embed_raw_text(chosen, cfg, spec, request.batch_size, model_dir)
    evalinput.check_forms(chosen, cfg, used, spec, takes_ids=bool(enc_cfg.source))
    for ds in chosen.values():
        ds.feature_dims = dict(cfg.input_dims)
    return chosen, train_labels, used


def evaluate(request: Evaluation) -> dict[str, Any]:
    """Metrics per split, each with the input-blind ``baseline`` beside it, and the ``modalities`` used."""
    from training.evalinput import constant_baseline

    if request.threads:
        torch.set_num_threads(request.threads)
    quiet_transformers()
    model = load_any_model(request.model)
    names = None if request.split == "all" else [request.split]
    splits, train_labels, used = load_eval_data(request, model, names)
    cfg: Any = model.config
    label_range = tuple(cfg.label_range)
    out: dict[str, Any] = {}
    for name, ds in splits.items():
        pred, y = predict(model, ds, request.batch_size)
        out[name] = metrics_for(label_range, pred, y)
        out[name]["n"] = len(ds)
        out[name]["baseline"] = constant_baseline(train_labels, label_range, y)
        out[name]["modalities"] = list(used)
    return out


def format_metrics(m: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float) and k != "constant")


def format_result(result: dict[str, Any]) -> str:
    """``fine evaluate``'s lines: per split the metrics with the modalities used, then the baseline."""
    lines = []
    for name, m in result.items():
        absent = [x for x in MODALITIES if x not in m["modalities"]]
        used = ",".join(m["modalities"]) + (f" ({','.join(absent)} absent)" if absent else "")
        lines.append(f"{name} (n={m['n']}, modalities {used}): {format_metrics(m)}")
        b = m["baseline"]
        lines.append(
            f"  input-blind baseline (constant {b['constant']:+.3f}: {b['from']}): {format_metrics(b)}"
        )
    return "\n".join(lines)
