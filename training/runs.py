"""A training run (``fine train``): one model per seed, or a K-fold cross-validation grouped by video,
each written as a run directory (``config.json``, ``log.csv``, ``best/``, ``checkpoint/``, ``model/``,
``metrics.json``); several runs add ``summary.json`` with mean ± std. Configured by :class:`TrainRun`.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifact import atomic_write_bytes
from core.config import MODALITIES, TextEncoderConfig
from core.errors import FineError, check
from training import datasets, distributed
from training.data import Dataset, grouped_folds, pool_splits, restrict_modalities
from training.input_norm import fit_input_norm
from training.metrics import metrics_for
from training.registry import KINDS, PRESETS, ModelKind
from training.robust import RobustConfig, RobustTraining
from training.textprep import (
    cache_text_embeddings,
    check_text,
    embedded_copy,
    quiet_transformers,
    tokenize_splits,
)
from training.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRun:
    """Everything one ``fine train`` needs. ``train.seed`` is replaced by each of ``seeds``;
    ``text_encoder``: a transformer (packaged:minilm, a directory or a HF id) put in the model, trained
    when ``finetune_text``, else frozen and its embeddings cached (unless ``robust`` corrupts token ids)."""

    data: str
    out: Path
    model: str = "fine"
    preset: str = "default"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    loss_overrides: dict[str, Any] = field(default_factory=dict)
    text_encoder: str | None = None
    finetune_text: bool = False
    max_text_len: int = 128
    modalities: tuple[str, ...] = MODALITIES
    train: TrainConfig = field(default_factory=TrainConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    seeds: tuple[int, ...] = (1111,)
    cv: int = 0
    resume: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        check(self.model in KINDS, f"model must be one of {sorted(KINDS)}, got {self.model!r}")
        check(self.preset in PRESETS, f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        check(bool(self.seeds), "at least one seed")
        check(all(m in MODALITIES for m in self.modalities), f"modalities must be among {list(MODALITIES)}")

    @property
    def kind(self) -> ModelKind:
        return KINDS[self.model]

    @property
    def text_in_graph(self) -> bool:
        """A frozen text encoder runs inside the training graph (on token ids) instead of serving cached
        embeddings: when training corrupts text tokens, so the corrupted pass sees what the evaluation
        protocol feeds the artifact ([UNK] or masked ids through the encoder)."""
        return bool(self.text_encoder) and not self.finetune_text and self.robust.corrupts_text_ids


# ---------------------------------------------------------------------------------------------------
# one run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """CPU time of this process (user + system): a fair cost measure when the machine is shared."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _build(run: TrainRun, train: Dataset) -> tuple[Any, Any, Any]:
    """Config, model and loss of ``run.kind`` for ``train`` (no text encoder in the model)."""
    cfg = run.kind.config(train, run.preset, run.model_overrides)
    model = run.kind.model(cfg, None)
    return cfg, model, run.kind.loss(cfg, run.loss_overrides)


def _final_model(
    run: TrainRun, cfg: Any, model: torch.nn.Module, enc_cfg: TextEncoderConfig, encoder: Any
) -> tuple[Any, torch.nn.Module]:
    """The artifact model: with the (frozen, cached during training) text encoder put back inside."""
    if not enc_cfg.source or encoder is None or getattr(model, "text_encoder", None) is not None:
        return cfg, model
    full_cfg = replace(cfg, text_encoder=enc_cfg)
    full = run.kind.model(full_cfg, encoder)
    missing = full.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert all(k.startswith("text_encoder.") for k in missing), missing
    return full_cfg, full.eval()


def _robust_training(run: TrainRun, enc_cfg: TextEncoderConfig) -> RobustTraining | None:
    if not run.robust.enabled:
        return None
    unk_id = None
    if enc_cfg.source and (run.finetune_text or run.text_in_graph):  # token ids: drop -> [UNK]
        from core.text_encoder import load_tokenizer

        unk_id = int(load_tokenizer(enc_cfg).unk_token_id)
    return RobustTraining(run.robust, unk_id)


def _model_and_loss(
    run: TrainRun, train: Dataset, seed: int, enc_cfg: TextEncoderConfig
) -> tuple[Any, torch.nn.Module, Any]:
    if not run.finetune_text:
        return _build(run, train)
    from core.text_encoder import load_text_encoder

    # a fresh copy of the pretrained encoder per run (seeds and folds must not share weights)
    cfg, _, _ = _build(run, train)
    cfg = replace(cfg, text_encoder=enc_cfg)
    enc = load_text_encoder(enc_cfg)
    if run.kind.reseed_encoder_model:
        torch.manual_seed(seed)
    return cfg, run.kind.model(cfg, enc), run.kind.loss(cfg, run.loss_overrides)


def train_one(
    run: TrainRun,
    splits: dict[str, Dataset],
    run_dir: Path,
    seed: int,
    enc_cfg: TextEncoderConfig,
    encoder: Any = None,
) -> dict[str, Any]:
    """Train one model on ``splits`` (text already tokenized or cached) and write the run directory."""
    train, valid, test = splits["train"], splits.get("valid"), splits.get("test")
    if not len(train):
        raise FineError(f"--data {run.data}: the train split is empty")
    train_cfg = replace(run.train, seed=seed)
    torch.manual_seed(seed)
    cfg, model, loss = _model_and_loss(run, train, seed, enc_cfg)
    in_graph = enc_cfg.source is not None and encoder is not None and run.text_in_graph
    if in_graph:
        # text is token ids; the text standardisation is fitted on the frozen encoder's embeddings,
        # exactly as on the cached ones, and the encoder goes into the training graph
        fit_input_norm(model, embedded_copy(train, encoder))
        cfg, model = _final_model(run, cfg, model, enc_cfg, encoder)
    else:
        fit_input_norm(model, train)  # standardise input features (a no-op for MMIM and token ids)
    resolved = {
        "command": "fine train",
        "data": run.data,
        "model_kind": run.model,
        "model": cfg.to_dict(),
        "text_encoder": enc_cfg.__dict__,
        "text_cached": bool(enc_cfg.source and not run.finetune_text and not in_graph),
        "loss": loss.cfg.__dict__ if not hasattr(loss.cfg, "to_dict") else loss.cfg.to_dict(),
        "train": train_cfg.__dict__,
        "robust": run.robust.to_dict(),
        "modalities": list(run.modalities),
        "sizes": {k: len(v) for k, v in splits.items()},
        "world_size": getattr(distributed.current(), "world_size", 1),  # every (re)start: world.json
    }
    main = distributed.is_main()  # under torchrun, rank 0 writes the run directory
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            run_dir / "config.json", (json.dumps(resolved, indent=2, default=list) + "\n").encode()
        )
    trainer = Trainer(model, loss, train_cfg, run_dir=run_dir, robust=_robust_training(run, enc_cfg))
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = trainer.fit(train, valid, resume=run.resume)
    metrics: dict[str, Any] = {
        "seed": seed,
        "best_epoch": result.best_epoch,
        "best_valid_loss": _finite(result.best_valid_loss),  # None without a validation split
        "epochs_run": len(result.history),
        "steps": result.steps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "train_cpu_seconds": round(_cpu_seconds() - c0, 1),
    }
    if not main:
        return metrics
    for name, split in (("valid", valid), ("test", test)):
        if split is not None and len(split):
            pred, y = trainer.predict(split)
            metrics[name] = metrics_for(train.label_range, pred, y)
    metrics["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    _, final = _final_model(run, cfg, model, enc_cfg, encoder)
    card = {
        "name": f"{run.model}-{run.data.split(':')[0]}",
        "description": f"{run.model.upper()} trained by 'fine train --data {run.data}'",
        "training_data": {"data": run.data, "sizes": resolved["sizes"], "modalities": list(run.modalities)},
        "metrics": metrics,
    }
    recipe = {"train": resolved["train"], "robust": resolved["robust"]}
    run.kind.save(final, run_dir / "model", card, recipe, loss)
    atomic_write_bytes(run_dir / "metrics.json", json_bytes(metrics))
    return metrics


# ---------------------------------------------------------------------------------------------------
# seeds, folds, summary


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean and sample std (ddof=1; 0 for one run) of every metric over runs, per split."""
    out: dict[str, Any] = {"runs": len(runs)}
    for split in ("valid", "test"):
        rows = [r[split] for r in runs if split in r]
        if not rows:
            continue
        out[split] = {}
        for k in rows[0]:
            v = np.array([r[k] for r in rows], dtype=np.float64)
            out[split][k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    out["train_seconds"] = {"mean": float(np.mean([r["train_seconds"] for r in runs]))}
    return out


def format_summary(summary: dict[str, Any], split: str) -> str:
    if split not in summary:
        return ""
    cells = []
    for k, v in summary[split].items():
        pct = k not in ("MAE", "Corr")
        scale = 100.0 if pct else 1.0
        fmt = ".1f" if pct else ".3f"
        cell = f"{k}={v['mean'] * scale:{fmt}}"
        if summary["runs"] > 1:
            cell += f"±{v['std'] * scale:{fmt}}"
        cells.append(cell)
    return f"{split} ({summary['runs']} run{'s' if summary['runs'] > 1 else ''}): " + "  ".join(cells)


def prepare(run: TrainRun) -> tuple[dict[str, Dataset], TextEncoderConfig, Any]:
    """The data with the text in the form training takes, the text encoder config and a frozen encoder."""
    splits = datasets.load(run.data)
    restrict_modalities(splits, run.modalities)
    enc_cfg = TextEncoderConfig()
    encoder = None
    if run.text_encoder:
        check_text(splits)
        quiet_transformers()
        enc_cfg = TextEncoderConfig(
            source=run.text_encoder, finetune=run.finetune_text, max_length=run.max_text_len
        )
        if run.finetune_text:  # each run loads its own trainable copy; only the width is needed here
            from core.packaged import resolve_packaged
            from core.text_encoder import _transformers

            hidden = int(
                _transformers().AutoConfig.from_pretrained(resolve_packaged(run.text_encoder)).hidden_size
            )
            tokenize_splits(splits, enc_cfg, hidden)
        else:
            from core.text_encoder import load_text_encoder

            encoder = load_text_encoder(
                TextEncoderConfig(source=run.text_encoder, finetune=False, max_length=run.max_text_len)
            )
            tokenize_splits(splits, enc_cfg, encoder.hidden_size)
            if run.text_in_graph:
                log.info("frame dropout on: the frozen text encoder runs in the training graph (no cache)")
            else:
                t0 = time.perf_counter()
                cache_text_embeddings(splits, encoder)
                log.info("cached frozen text embeddings in %.1f s", time.perf_counter() - t0)
    return splits, enc_cfg, encoder


def run_training(run: TrainRun) -> dict[str, Any]:
    """Every run of ``run`` (seeds, or folds × seeds); the summary over them (also ``summary.json``)."""
    if run.threads:
        torch.set_num_threads(run.threads)
    t0 = time.perf_counter()
    splits, enc_cfg, encoder = prepare(run)
    seeds = run.seeds
    runs: list[dict[str, Any]] = []
    if run.cv:
        if run.cv < 2:
            raise FineError(f"--cv must be >= 2, got {run.cv}")
        ds = pool_splits(splits)
        folds = grouped_folds(ds.samples, run.cv)
        for k in range(run.cv):
            v = (k + 1) % run.cv
            train_idx = [i for j, f in enumerate(folds) if j not in (k, v) for i in f]
            fold = {
                "train": ds.subset(train_idx, "train"),
                "valid": ds.subset(folds[v], "valid"),
                "test": ds.subset(folds[k], "test"),
            }
            for seed in seeds:
                sub = f"fold-{k}" + (f"/seed-{seed}" if len(seeds) > 1 else "")
                m = train_one(run, fold, run.out / sub, seed, enc_cfg, encoder)
                m["fold"] = k
                runs.append(m)
                print(f"fold {k} seed {seed}: " + format_summary(summarize([m]), "test"), flush=True)
    else:
        for seed in seeds:
            run_dir = run.out if len(seeds) == 1 else run.out / f"seed-{seed}"
            m = train_one(run, splits, run_dir, seed, enc_cfg, encoder)
            runs.append(m)
            if len(seeds) > 1:
                print(f"seed {seed}: " + format_summary(summarize([m]), "test"), flush=True)
    summary = summarize(runs)
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary["total_cpu_seconds"] = round(_cpu_seconds(), 1)
    summary["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if len(runs) > 1 and distributed.is_main():
        atomic_write_bytes(run.out / "summary.json", json_bytes(summary))
    return summary


def _finite(x: Any) -> Any:
    """``x`` with every NaN/±inf float (at any depth) as None: JSON has no Infinity."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_bytes(doc: Any) -> bytes:
    """Strict JSON (no NaN/Infinity, which other readers refuse), indented, newline-terminated."""
    return (json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n").encode()
