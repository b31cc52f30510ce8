"""``fine train``: train FINE on a dataset (``--data SCHEME:ARG``) and write a model artifact."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from core.artifact import ModelCard, atomic_write_bytes, build_model, save_model
from core.config import ConfigError, FineConfig, LossConfig, from_dict
from core.errors import FineError
from training import datasets
from training.metrics import regression_metrics
from training.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    # METHOD.md defaults: E=4, q=8, d=128, 2 Q-Former blocks, 2 fusion layers, 4 heads.
    "default": {},
    # A small model for demos, tests and 2-core laptops.
    "small": {
        "d_model": 64,
        "moq": {"num_experts": 2, "num_queries": 4, "num_blocks": 1, "num_heads": 4},
        "ftre": {"feat_dim": 32, "hidden": 64},
        "fusion": {"num_layers": 1, "num_heads": 4, "head_hidden": 64},
    },
}


def build_config(
    feature_dims: dict[str, int],
    label_range: tuple[float, float],
    preset: str = "default",
    overrides: dict[str, Any] | None = None,
) -> FineConfig:
    data: dict[str, Any] = json.loads(json.dumps(PRESETS[preset]))
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    data.setdefault("input_dims", dict(feature_dims))
    data.setdefault("label_range", list(label_range))
    return FineConfig.from_dict(data)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fine train", description=__doc__)
    p.add_argument(
        "--data",
        required=True,
        help="SCHEME:ARG, one of: " + "; ".join(f"{k} ({v})" for k, v in datasets.schemes().items()),
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (model/ and metrics.json go here)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument(
        "--model-config", type=Path, help="JSON file of FineConfig overrides (unknown keys are errors)"
    )
    p.add_argument("--loss-config", type=Path, help="JSON file of LossConfig overrides")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def _read_json(path: Path | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise FineError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise FineError(f"{what} {path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FineError(f"{what} {path}: must hold a JSON object")
    return data


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = datasets.load(args.data)
    train, valid, test = splits["train"], splits.get("valid"), splits.get("test")
    if not len(train):
        raise FineError(f"--data {args.data}: the train split is empty")
    model_cfg = build_config(
        train.feature_dims, train.label_range, args.preset, _read_json(args.model_config, "--model-config")
    )
    loss_cfg = from_dict(LossConfig, _read_json(args.loss_config, "--loss-config"))
    train_cfg = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    torch.manual_seed(args.seed)
    model = build_model(model_cfg)
    from core.losses import FineLoss

    loss = FineLoss(model_cfg, loss_cfg)
    trainer = Trainer(model, loss, train_cfg)
    result = trainer.fit(train, valid)
    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
    }
    for name, split in (("valid", valid), ("test", test)):
        if split is not None and len(split):
            pred, y = trainer.predict(split)
            metrics[name] = regression_metrics(pred, y)
    card = ModelCard(
        name=f"fine-{args.data.split(':')[0]}",
        description=f"FINE trained by 'fine train --data {args.data}'",
        training_data={"data": args.data, "sizes": {k: len(v) for k, v in splits.items()}},
        metrics=metrics,
        extra={"train": {k: getattr(train_cfg, k) for k in ("epochs", "batch_size", "lr", "seed")}},
    )
    save_model(model, args.out / "model", card)
    loss.save(args.out / "model" / "loss.safetensors")
    atomic_write_bytes(args.out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


def train_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        metrics = run(args)
    except (FineError, ConfigError) as exc:
        print(f"fine train: {exc}", file=sys.stderr)
        return 2
    test = metrics.get("test") or metrics.get("valid") or {}
    print(f"trained {metrics['steps']} steps in {metrics['seconds']} s (best epoch {metrics['best_epoch']})")
    if test:
        which = "test" if "test" in metrics else "valid"
        print(f"{which}: " + "  ".join(f"{k}={v:.4f}" for k, v in test.items()))
    print(f"model written to {args.out / 'model'}")
    return 0
