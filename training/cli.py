"""``fine train`` and ``fine evaluate``.

``fine train --data SCHEME:ARG --out RUN`` trains FINE (``--model fine``) or the MMIM baseline
(``--model mmim``) and writes a run directory: ``config.json`` (resolved model, loss and training
config and the data), ``log.csv`` (one row per epoch), ``best/`` and ``checkpoint/`` (``--resume``
continues from it), ``model/`` (the artifact) and ``metrics.json`` (valid and test, MMSA conventions).
``--seeds 1111,1112,...`` trains one run per seed under ``RUN/seed-S`` and ``--cv K`` runs a K-fold
cross-validation grouped by video under ``RUN/fold-K``; both write ``summary.json`` with mean ± std.

Text: ``--text-encoder packaged:minilm`` puts a transformer encoder in the model and tokenizes the
data's text; ``--finetune-text`` trains it (its own learning rate ``--lr-text``), otherwise it is frozen
and, because a frozen encoder's output never changes, its token embeddings are computed once and cached
for training (the saved model still contains the encoder and takes token ids).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifact import ModelCard, atomic_write_bytes, load_model, read_config, save_model
from core.clihelp import add_examples
from core.config import MODALITIES, FineConfig, LossConfig, TextEncoderConfig, from_dict
from core.errors import FineError, os_error_line
from training import datasets, distributed, robust
from training.data import Dataset, Sample, batch_order, collate
from training.input_norm import fit_input_norm
from training.metrics import metrics_for
from training.trainer import TrainConfig, Trainer, predict

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    # docs/METHOD.md defaults: E=4, q=8, d=128, 2 Q-Former blocks, 2 fusion layers, 4 heads.
    "default": {},
    # A small model for demos, tests and 2-core laptops (ffn_mult 4: the shipped default model's recipe).
    "small": {
        "d_model": 64,
        "moq": {"num_experts": 2, "num_queries": 4, "num_blocks": 1, "num_heads": 4, "ffn_mult": 4},
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


# ---------------------------------------------------------------------------------------------------
# arguments


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _modalities(text: str) -> tuple[str, ...]:
    mods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in mods if m not in MODALITIES]
    if bad or not mods:
        raise argparse.ArgumentTypeError(
            f"modalities must be a comma list of {list(MODALITIES)}, got {text!r}"
        )
    return mods


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fine train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_examples(
        p,
        "fine train --data synthetic --out runs/synthetic",
        "fine train --data misa:mosi.pkl --out runs/mosi --seeds 1111,1112,1113",
        "fine train --data cache:runs/cache --out runs/mine --modality-dropout 0.3",
    )
    p.add_argument(
        "--data",
        required=True,
        help="SCHEME:ARG, one of: " + "; ".join(f"{k} ({v})" for k, v in datasets.schemes().items()),
    )
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--model", choices=("fine", "mmim"), default="fine")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="FINE size preset")
    p.add_argument(
        "--model-config", type=Path, help="JSON file of model config overrides (unknown keys are errors)"
    )
    p.add_argument("--loss-config", type=Path, help="JSON file of loss config overrides")
    p.add_argument("--text-encoder", help="transformer text encoder: packaged:minilm, a directory or a HF id")
    p.add_argument("--finetune-text", action="store_true", help="train the text encoder (default: frozen)")
    p.add_argument("--max-text-len", type=int, default=128, help="token limit of the text encoder")
    p.add_argument(
        "--modalities", type=_modalities, default=MODALITIES, help="use only these (others absent)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-text", type=float, default=2e-5)
    p.add_argument("--critic-lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument(
        "--patience", type=int, default=8, help="epochs without a better valid loss before stopping"
    )
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--seeds", type=_int_list, help="several seeds, e.g. 1111,1112,1113 (mean ± std reported)")
    p.add_argument(
        "--cv", type=int, default=0, help="K-fold cross-validation grouped by video over all splits"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    robust.add_arguments(p)
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


# ---------------------------------------------------------------------------------------------------
# data preparation


def restrict_modalities(splits: dict[str, Dataset], keep: tuple[str, ...]) -> None:
    """Mark every modality not in ``keep`` absent (in place)."""
    for ds in splits.values():
        for s in ds.samples:
            for m in MODALITIES:
                if m not in keep:
                    s.features[m] = None


def check_text(splits: dict[str, Dataset]) -> None:
    missing = [
        s.id
        for ds in splits.values()
        for s in ds.samples
        if s.text is None and s.features.get("text") is not None
    ]
    if missing:
        raise FineError(
            f"--text-encoder needs the samples' text, but {missing[0]} (and {len(missing) - 1} more) has none"
        )


def quiet_transformers() -> None:
    """No 'Loading weights' bars on stderr: CLI errors must stay one line."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass


def tokenize_splits(splits: dict[str, Dataset], enc_cfg: TextEncoderConfig, hidden: int) -> None:
    from core.text_encoder import load_tokenizer
    from training.textdata import tokenize

    check_text(splits)
    tokenize(splits, load_tokenizer(enc_cfg), enc_cfg.max_length, hidden)


@torch.no_grad()
def cache_text_embeddings(splits: dict[str, Dataset], encoder: torch.nn.Module, batch_size: int = 64) -> None:
    """Replace token ids by the frozen encoder's token embeddings ``(t, hidden)`` (in place)."""
    encoder.eval()
    for ds in splits.values():
        for idx in batch_order(ds, batch_size, False, bucket=True):
            chunk = [ds.samples[i] for i in idx if ds.samples[i].features.get("text") is not None]
            if not chunk:
                continue
            b = collate(chunk, ds.feature_dims)
            h = encoder(b.features["text"], b.masks["text"]).float().numpy()
            for i, s in enumerate(chunk):
                s.features["text"] = h[i, : int(b.masks["text"][i].sum())].copy()


def _embedded_copy(data: Dataset, encoder: torch.nn.Module) -> Dataset:
    """A copy of ``data`` (token ids) whose text is the frozen encoder's token embeddings."""
    from dataclasses import replace

    samples = [replace(s, features=dict(s.features)) for s in data.samples]
    copy = Dataset(data.name, samples, data.feature_dims, data.label_range, data.feature_profile)
    cache_text_embeddings({"copy": copy}, encoder)
    return copy


def grouped_folds(samples: list[Sample], k: int) -> list[list[int]]:
    """Indices of ``k`` folds; whole groups (videos) per fold, balanced by size, deterministic."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group or s.id, []).append(i)
    if len(groups) < k:
        raise FineError(f"--cv {k}: only {len(groups)} groups (videos) in the data")
    folds: list[list[int]] = [[] for _ in range(k)]
    for _, idx in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(folds, key=len).extend(idx)
    return [sorted(f) for f in folds]


# ---------------------------------------------------------------------------------------------------
# one run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """CPU time of this process (user + system): a fair cost measure when the machine is shared."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _model_and_loss(
    args: argparse.Namespace, train: Dataset, enc_cfg: TextEncoderConfig
) -> tuple[Any, Any, Any]:
    overrides = _read_json(args.model_config, "--model-config")
    loss_over = _read_json(args.loss_config, "--loss-config")
    if args.model == "mmim":
        from core.mmim import MMIM, MMIMConfig, MMIMLoss, MMIMLossConfig

        data = {"input_dims": dict(train.feature_dims), "label_range": list(train.label_range), **overrides}
        data["text_encoder"] = enc_cfg.__dict__ if enc_cfg.source else data.get("text_encoder", {})
        cfg = MMIMConfig.from_dict(json.loads(json.dumps(data)))
        model = MMIM(cfg)
        return cfg, model, MMIMLoss(cfg, from_dict(MMIMLossConfig, loss_over))
    from core.losses import FineLoss
    from core.model import FINE

    if train.feature_profile is not None and "feature_profile" not in overrides:
        # data built by our extractors: record them, so scoring refuses features it cannot reproduce
        overrides = {**overrides, "feature_profile": train.feature_profile}
    cfg = build_config(train.feature_dims, train.label_range, args.preset, overrides)
    model = FINE(cfg)
    return cfg, model, FineLoss(cfg, from_dict(LossConfig, loss_over))


def _final_model(
    args: argparse.Namespace, cfg: Any, model: torch.nn.Module, enc_cfg: TextEncoderConfig, encoder: Any
) -> tuple[Any, torch.nn.Module]:
    """The artifact model: with the (frozen, cached during training) text encoder put back inside."""
    if not enc_cfg.source or encoder is None or getattr(model, "text_encoder", None) is not None:
        return cfg, model
    from dataclasses import replace

    full_cfg = replace(cfg, text_encoder=enc_cfg)
    if args.model == "mmim":
        from core.mmim import MMIM

        full = MMIM(full_cfg, encoder)
    else:
        from core.model import FINE

        full = FINE(full_cfg, text_encoder=encoder)
    missing = full.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert all(k.startswith("text_encoder.") for k in missing), missing
    return full_cfg, full.eval()


def robust_config(args: argparse.Namespace) -> robust.RobustConfig:
    """``--robust-config FILE`` overridden by the ``--modality-dropout`` ... flags."""
    path = Path(args.robust_config) if args.robust_config else None
    return robust.config_from_args(args, _read_json(path, "--robust-config"))


def _text_in_graph(args: argparse.Namespace, cfg: robust.RobustConfig) -> bool:
    """A frozen text encoder runs inside the training graph (on token ids) instead of serving cached
    embeddings: when training corrupts text tokens, so the corrupted pass sees what the evaluation
    protocol feeds the artifact ([UNK] or masked ids through the encoder)."""
    return bool(args.text_encoder) and not args.finetune_text and cfg.corrupts_text_ids


def _robust_training(
    args: argparse.Namespace, cfg: robust.RobustConfig, enc_cfg: TextEncoderConfig
) -> robust.RobustTraining | None:
    if not cfg.enabled:
        return None
    unk_id = None
    if enc_cfg.source and (args.finetune_text or _text_in_graph(args, cfg)):  # token ids: drop -> [UNK]
        from core.text_encoder import load_tokenizer

        unk_id = int(load_tokenizer(enc_cfg).unk_token_id)
    return robust.RobustTraining(cfg, unk_id)


def train_one(
    args: argparse.Namespace,
    splits: dict[str, Dataset],
    run_dir: Path,
    seed: int,
    enc_cfg: TextEncoderConfig,
    encoder: Any = None,
) -> dict[str, Any]:
    """Train one model on ``splits`` (text already tokenized or cached) and write the run directory."""
    train, valid, test = splits["train"], splits.get("valid"), splits.get("test")
    if not len(train):
        raise FineError(f"--data {args.data}: the train split is empty")
    train_cfg = TrainConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_text=args.lr_text,
        critic_lr=args.critic_lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        patience=args.patience,
        seed=seed,
        progress=args.progress,
    )
    rob_cfg = robust_config(args)
    torch.manual_seed(seed)
    train_enc = enc_cfg if args.finetune_text else TextEncoderConfig()
    if args.finetune_text:
        from core.text_encoder import load_text_encoder

        # a fresh copy of the pretrained encoder per run (seeds and folds must not share weights)
        cfg, _, _ = _model_and_loss(args, train, TextEncoderConfig())
        from dataclasses import replace

        cfg = replace(cfg, text_encoder=enc_cfg)
        enc = load_text_encoder(enc_cfg)
        if args.model == "mmim":
            from core.mmim import MMIM, MMIMLoss, MMIMLossConfig

            model, loss = (
                MMIM(cfg, enc),
                MMIMLoss(cfg, from_dict(MMIMLossConfig, _read_json(args.loss_config, "--loss-config"))),
            )
        else:
            from core.losses import FineLoss
            from core.model import FINE

            torch.manual_seed(seed)
            model, loss = (
                FINE(cfg, text_encoder=enc),
                FineLoss(cfg, from_dict(LossConfig, _read_json(args.loss_config, "--loss-config"))),
            )
    else:
        cfg, model, loss = _model_and_loss(args, train, train_enc)
    in_graph = enc_cfg.source is not None and encoder is not None and _text_in_graph(args, rob_cfg)
    if in_graph:
        # text is token ids; the text standardisation is fitted on the frozen encoder's embeddings,
        # exactly as on the cached ones, and the encoder goes into the training graph
        fit_input_norm(model, _embedded_copy(train, encoder))
        cfg, model = _final_model(args, cfg, model, enc_cfg, encoder)
    else:
        fit_input_norm(model, train)  # standardise input features (a no-op for MMIM and token ids)
    resolved = {
        "command": "fine train",
        "data": args.data,
        "model_kind": args.model,
        "model": cfg.to_dict(),
        "text_encoder": enc_cfg.__dict__,
        "text_cached": bool(enc_cfg.source and not args.finetune_text and not in_graph),
        "loss": loss.cfg.__dict__ if not hasattr(loss.cfg, "to_dict") else loss.cfg.to_dict(),
        "train": train_cfg.__dict__,
        "robust": rob_cfg.to_dict(),
        "modalities": list(args.modalities),
        "sizes": {k: len(v) for k, v in splits.items()},
        "world_size": getattr(distributed.current(), "world_size", 1),  # every (re)start: world.json
    }
    main = distributed.is_main()  # under torchrun, rank 0 writes the run directory
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            run_dir / "config.json", (json.dumps(resolved, indent=2, default=list) + "\n").encode()
        )
    trainer = Trainer(
        model, loss, train_cfg, run_dir=run_dir, robust=_robust_training(args, rob_cfg, enc_cfg)
    )
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = trainer.fit(train, valid, resume=args.resume)
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
    _, final = _final_model(args, cfg, model, enc_cfg, encoder)
    card = {
        "name": f"{args.model}-{args.data.split(':')[0]}",
        "description": f"{args.model.upper()} trained by 'fine train --data {args.data}'",
        "training_data": {"data": args.data, "sizes": resolved["sizes"], "modalities": list(args.modalities)},
        "metrics": metrics,
    }
    if args.model == "mmim":
        from core.mmim import save_mmim

        save_mmim(final, run_dir / "model", card)
    else:
        save_model(
            final,
            run_dir / "model",
            ModelCard(
                card["name"],
                card["description"],
                card["training_data"],
                metrics,
                {"train": resolved["train"], "robust": resolved["robust"]},
            ),
        )
        loss.save(run_dir / "model" / "loss.safetensors")
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


def prepare(args: argparse.Namespace) -> tuple[dict[str, Dataset], TextEncoderConfig, Any]:
    splits = datasets.load(args.data)
    restrict_modalities(splits, args.modalities)
    enc_cfg = TextEncoderConfig()
    encoder = None
    if args.text_encoder:
        check_text(splits)
        quiet_transformers()
        enc_cfg = TextEncoderConfig(
            source=args.text_encoder, finetune=args.finetune_text, max_length=args.max_text_len
        )
        if args.finetune_text:  # each run loads its own trainable copy; only the width is needed here
            from core.text_encoder import _transformers, resolve_source

            hidden = int(
                _transformers().AutoConfig.from_pretrained(resolve_source(args.text_encoder)).hidden_size
            )
            tokenize_splits(splits, enc_cfg, hidden)
        else:
            from core.text_encoder import load_text_encoder

            encoder = load_text_encoder(
                TextEncoderConfig(source=args.text_encoder, finetune=False, max_length=args.max_text_len)
            )
            tokenize_splits(splits, enc_cfg, encoder.hidden_size)
            if _text_in_graph(args, robust_config(args)):
                log.info("frame dropout on: the frozen text encoder runs in the training graph (no cache)")
            else:
                t0 = time.perf_counter()
                cache_text_embeddings(splits, encoder)
                log.info("cached frozen text embeddings in %.1f s", time.perf_counter() - t0)
    return splits, enc_cfg, encoder


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    robust_config(args)  # a bad option fails before any data is loaded
    splits, enc_cfg, encoder = prepare(args)
    seeds = args.seeds or [args.seed]
    runs: list[dict[str, Any]] = []
    if args.cv:
        if args.cv < 2:
            raise FineError(f"--cv must be >= 2, got {args.cv}")
        pooled = [s for k in ("train", "valid", "test") if k in splits for s in splits[k].samples]
        ref = next(iter(splits.values()))
        ds = Dataset("all", pooled, ref.feature_dims, ref.label_range)
        folds = grouped_folds(pooled, args.cv)
        for k in range(args.cv):
            v = (k + 1) % args.cv
            train_idx = [i for j, f in enumerate(folds) if j not in (k, v) for i in f]
            fold = {
                "train": ds.subset(train_idx, "train"),
                "valid": ds.subset(folds[v], "valid"),
                "test": ds.subset(folds[k], "test"),
            }
            for seed in seeds:
                sub = f"fold-{k}" + (f"/seed-{seed}" if len(seeds) > 1 else "")
                m = train_one(args, fold, args.out / sub, seed, enc_cfg, encoder)
                m["fold"] = k
                runs.append(m)
                print(f"fold {k} seed {seed}: " + format_summary(summarize([m]), "test"), flush=True)
    else:
        for seed in seeds:
            run_dir = args.out if len(seeds) == 1 else args.out / f"seed-{seed}"
            m = train_one(args, splits, run_dir, seed, enc_cfg, encoder)
            runs.append(m)
            if len(seeds) > 1:
                print(f"seed {seed}: " + format_summary(summarize([m]), "test"), flush=True)
    summary = summarize(runs)
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    summary["total_cpu_seconds"] = round(_cpu_seconds(), 1)
    summary["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if len(runs) > 1 and distributed.is_main():
        atomic_write_bytes(args.out / "summary.json", json_bytes(summary))
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


def train_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    main = True
    try:
        dist = distributed.setup()  # under torchrun: join the process group (training/distributed.py)
        main = dist is None or dist.main
        summary = run(args)
    except (FineError, FloatingPointError) as exc:
        print(f"fine train: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable --out, a full disk
        print(f"fine train: {os_error_line(exc)}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()
    if not main:  # rank 0 reports
        return 0
    print(
        f"done in {summary['total_seconds']} s wall ({summary['total_cpu_seconds']} s CPU), peak RSS {summary['peak_rss_mb']:.0f} MB; run directory {args.out}"
    )
    for split in ("valid", "test"):
        line = format_summary(summary, split)
        if line:
            print(line)
    return 0


# ---------------------------------------------------------------------------------------------------
# fine evaluate


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fine evaluate", description="evaluate a trained model artifact on a dataset split"
    )
    add_examples(
        p,
        "fine evaluate --model runs/mosi/best --data misa:mosi.pkl",
        "fine evaluate --model runs/mosi/best --data misa:mosi.pkl --missing",
    )
    p.add_argument("--model", required=True, type=Path, help="model directory (RUN/model)")
    p.add_argument("--data", required=True, help="SCHEME:ARG (as for fine train)")
    p.add_argument("--split", default="test", help="split name, or 'all'")
    p.add_argument(
        "--modalities",
        type=_modalities,
        default=None,
        help="use only these (others absent); the data must carry them (default: every modality it carries)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, help="write the metrics as JSON here")
    p.add_argument("--threads", type=int, default=None)
    from training import missing

    missing.add_arguments(p)
    return p


def load_any_model(path: Path) -> torch.nn.Module:
    meta = read_config(path)
    if meta.get("architecture") == "mmim":
        from core.mmim import load_mmim

        return load_mmim(path)
    return load_model(path)


def eval_splits(
    args: argparse.Namespace, model: torch.nn.Module, names: list[str] | None
) -> dict[str, Dataset]:
    """Load ``args.data`` for ``model`` (see :func:`load_eval_data`); ``names=None`` keeps every split."""
    return load_eval_data(args, model, names)[0]


def load_eval_data(
    args: argparse.Namespace, model: torch.nn.Module, names: list[str] | None
) -> tuple[dict[str, Dataset], np.ndarray | None, tuple[str, ...]]:
    """``args.data`` in the form ``model`` takes (``training.evalinput``): the modalities used (the data's,
    or ``--modalities``, which the data must carry), raw text through the model's own text encoder, every
    used modality checked for form and width. Returns the splits, the train labels (for the constant
    baseline; ``None`` without a train split) and the modalities used."""
    from training import evalinput

    splits = datasets.load(args.data)
    names = list(splits) if names is None else names
    missing = [n for n in names if n not in splits]
    if missing:
        raise FineError(f"--data {args.data} has no split {missing[0]!r}; it has {sorted(splits)}")
    train = splits.get("train")
    train_labels = train.labels() if train is not None and len(train) else None
    chosen = {n: splits[n] for n in names}
    requested = getattr(args, "modalities", None)
    used = evalinput.used_modalities(chosen, requested, args.data)
    restrict_modalities(chosen, used)
    cfg = model.config
    enc_cfg = cfg.text_encoder
    if "text" in used:
        if enc_cfg.source:
            quiet_transformers()
            tokenize_splits(chosen, enc_cfg, cfg.input_dims["text"])
        else:
            quiet_transformers()
            evalinput.embed_raw_text(chosen, cfg, args.data, args.batch_size)
    evalinput.check_forms(chosen, cfg, used, args.data, takes_ids=bool(enc_cfg.source))
    for ds in chosen.values():
        ds.feature_dims = dict(cfg.input_dims)
    return chosen, train_labels, used


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Metrics per split, each with the input-blind ``baseline`` beside it, and the ``modalities`` used."""
    from training.evalinput import constant_baseline

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    model = load_any_model(args.model)
    splits, train_labels, used = load_eval_data(args, model, None if args.split == "all" else [args.split])
    label_range = tuple(model.config.label_range)
    out: dict[str, Any] = {}
    for name, ds in splits.items():
        pred, y = predict(model, ds, args.batch_size)
        out[name] = metrics_for(label_range, pred, y)
        out[name]["n"] = len(ds)
        out[name]["baseline"] = constant_baseline(train_labels, label_range, y)
        out[name]["modalities"] = list(used)
    return out


def _format_metrics(m: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float) and k != "constant")


def evaluate_main(argv: list[str] | None = None) -> int:
    args = _eval_parser().parse_args(argv)
    if args.missing:
        from training import missing

        try:
            return missing.main(args)
        except FineError as exc:
            print(f"fine evaluate: {exc}", file=sys.stderr)
            return 2
    try:
        result = evaluate(args)
    except FineError as exc:
        print(f"fine evaluate: {exc}", file=sys.stderr)
        return 2
    for name, m in result.items():
        absent = [x for x in MODALITIES if x not in m["modalities"]]
        used = ",".join(m["modalities"]) + (f" ({','.join(absent)} absent)" if absent else "")
        print(f"{name} (n={m['n']}, modalities {used}): {_format_metrics(m)}")
        b = m["baseline"]
        print(f"  input-blind baseline (constant {b['constant']:+.3f}: {b['from']}): {_format_metrics(b)}")
    if args.out:
        atomic_write_bytes(args.out, json_bytes(result))
    return 0
