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
from pathlib import Path
from typing import Any

from core.artifact import atomic_write_bytes
from core.clihelp import add_threads, cli_main, command_parser, from_args
from core.config import MODALITIES
from core.errors import FineError
from training import datasets, distributed, robust
from training.registry import KINDS, PRESETS
from training.runs import TrainRun, format_summary, json_bytes, run_training
from training.trainer import TrainConfig

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


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine train",
        __doc__,
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
    p.add_argument("--model", choices=tuple(KINDS), default="fine")
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
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=0,
        help="first train each branch and its unimodal head on the single-modality samples for this "
        "many epochs, then everything",
    )
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--seeds", type=_int_list, help="several seeds, e.g. 1111,1112,1113 (mean ± std reported)")
    p.add_argument(
        "--cv", type=int, default=0, help="K-fold cross-validation grouped by video over all splits"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    add_threads(p, "torch CPU threads", default=None)
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


def robust_config(args: argparse.Namespace) -> robust.RobustConfig:
    """``--robust-config FILE`` overridden by the ``--modality-dropout`` ... flags."""
    path = Path(args.robust_config) if args.robust_config else None
    return robust.config_from_args(args, _read_json(path, "--robust-config"))


def train_run(args: argparse.Namespace) -> TrainRun:
    """The parsed ``fine train`` arguments as a validated :class:`TrainRun` (option files read)."""
    rob = robust_config(args)  # a bad option fails before any data is loaded
    names = (
        "epochs max_steps batch_size lr lr_text critic_lr weight_decay grad_clip patience warmup_epochs seed "
        "progress"
    )
    train = from_args(TrainConfig, args, names)
    return TrainRun(
        data=args.data,
        out=args.out,
        model=args.model,
        preset=args.preset,
        model_overrides=_read_json(args.model_config, "--model-config"),
        loss_overrides=_read_json(args.loss_config, "--loss-config"),
        text_encoder=args.text_encoder,
        finetune_text=args.finetune_text,
        max_text_len=args.max_text_len,
        modalities=tuple(args.modalities),
        train=train,
        robust=rob,
        seeds=tuple(args.seeds or [args.seed]),
        cv=args.cv,
        resume=args.resume,
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train as the parsed ``fine train`` arguments say; the summary (:func:`training.runs.run_training`)."""
    return run_training(train_run(args))


def train_main(argv: list[str] | None = None) -> int:
    return cli_main("fine train", parser(), _train, argv, errors=(FloatingPointError,))


def _train(args: argparse.Namespace) -> int:
    try:
        dist = distributed.setup()  # under torchrun: join the process group (training/distributed.py)
        main = dist is None or dist.main
        summary = run(args)
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


_parser = parser  # the name training.default_model imports


# ---------------------------------------------------------------------------------------------------
# fine evaluate


def eval_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine evaluate",
        "evaluate a trained model artifact on a dataset split",
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
    add_threads(p, "torch CPU threads", default=None)
    from training import missing

    missing.add_arguments(p)
    return p


def evaluate_main(argv: list[str] | None = None) -> int:
    return cli_main("fine evaluate", eval_parser(), _evaluate, argv)


def _evaluate(args: argparse.Namespace) -> int:
    if args.missing:
        from training import missing

        return missing.main(args)
    from training.evaluation import Evaluation, evaluate, format_result

    request = Evaluation(args.model, args.data, args.split, args.modalities, args.batch_size, args.threads)
    result = evaluate(request)
    if result:
        print(format_result(result))
    if args.out:
        atomic_write_bytes(args.out, json_bytes(result))
    return 0
