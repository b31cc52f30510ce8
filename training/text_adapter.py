"""Tune a text adapter (``core.text_adapter``) to sentiment: the first step of ``fine build-default``.

The encoder is frozen; low-rank updates of its attention and feed-forward layers and a linear head on
its mean-pooled token states learn the labelled texts (L1 or squared error, :data:`LOSSES`; AdamW, a
warm-up of 50 steps, or a quarter of all steps when that is fewer, then linear decay to zero). The head is
thrown away: the model's words branch learns its own from the adapted token states.
The epoch with the lowest mean absolute error on the valid texts is kept. Adapters are cached by encoder,
settings and training texts (``core.paths``), so a rebuild on the same data reuses the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import TextEncoderConfig
from core.errors import check, check_at_least
from training.metrics import regression_metrics

log = logging.getLogger(__name__)

WARMUP_STEPS = 50
# Squared error for texts with few distinct labels: MELD's three classes put on the MOSI scale are 47 %
# neutral (0), and under L1 (whose best constant is the median) MOSI + all MELD train collapsed to a
# constant in the first epoch (MELD valid Corr -0.05); under squared error it learned both
# (docs/TEXT_ENCODERS.md).
LOSSES = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}


@dataclass(frozen=True)
class AdapterTraining:
    encoder: str = "packaged:mpnet"
    rank: int = 8
    alpha: float = 16.0
    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 16
    max_length: int = 64
    seed: int = 0
    threads: int = 2
    loss: str = "l1"

    def __post_init__(self) -> None:
        check_at_least(self, "text_adapter", "rank epochs batch_size threads")
        check_at_least(self, "text_adapter", "max_length", 2)
        check(self.lr > 0, f"text_adapter.lr must be > 0, got {self.lr}")
        check(self.loss in LOSSES, f"text_adapter.loss must be one of {sorted(LOSSES)}, got {self.loss!r}")


@dataclass(frozen=True)
class Texts:
    """Labelled texts of one split (labels on the model's scale) and, optionally, the corpus each came
    from (``mosi``, ``meld``): the training record then scores the valid texts per corpus too."""

    texts: list[str]
    labels: np.ndarray
    sources: list[str] | None = None

    def __post_init__(self) -> None:
        check(
            self.sources is None or len(self.sources) == len(self.texts),
            f"Texts: {len(self.texts)} texts but {len(self.sources or [])} sources",
        )

    def __len__(self) -> int:
        return len(self.texts)


def by_source(pred: np.ndarray, data: Texts) -> dict[str, dict[str, float]]:
    """Per corpus of ``data``: its texts, MAE, Corr and Non0 Acc-2 (``training.metrics``; on MELD's labels
    the positive-vs-negative accuracy). Empty without sources."""
    sources = np.asarray(data.sources or [])
    out: dict[str, dict[str, float]] = {}
    for source in sorted(set(sources.tolist())):
        on = sources == source
        m = regression_metrics(pred[on], data.labels[on])
        out[source] = {
            "texts": int(on.sum()),
            **{k.lower(): round(m[k], 4) for k in ("MAE", "Corr", "Non0_acc_2")},
        }
    return out


def cache_key(cfg: AdapterTraining, train: Texts, valid: Texts) -> str:
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for part in (train, valid):
        h.update("\n".join(part.texts).encode())
        h.update(np.asarray(part.labels, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def train_adapter(cfg: AdapterTraining, train: Texts, valid: Texts, out: Path) -> dict[str, Any]:
    """Write the adapter to ``out`` (reused from the cache when the same training was done before); a
    record of the training: per-epoch train loss and valid MAE (also per corpus: :func:`by_source`), the
    epoch kept, seconds, the digest."""
    from core.paths import cache_dir
    from core.text_adapter import adapter_digest

    key = cache_key(cfg, train, valid)
    cached = cache_dir("text-adapters") / f"{key}.safetensors"
    record_path = cached.with_suffix(".json")
    if cached.is_file() and record_path.is_file():
        log.info("text adapter reused from %s", cached)
        record = json.loads(record_path.read_text())
    else:
        record = _train(cfg, train, valid, cached)
        from core.fileio import atomic_write_bytes

        atomic_write_bytes(record_path, json.dumps(record, indent=2).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    if adapter_digest(out) != record["digest"]:
        raise RuntimeError(f"{out}: the copied text adapter does not match its record")
    return record


def _train(cfg: AdapterTraining, train: Texts, valid: Texts, path: Path) -> dict[str, Any]:
    from core.text_adapter import AdapterConfig, adapter_tensors, attach, save_adapter
    from core.text_encoder import load_text_encoder, load_tokenizer

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        enc_cfg = TextEncoderConfig(source=cfg.encoder, finetune=False, max_length=cfg.max_length)
        tokenizer = load_tokenizer(enc_cfg)
        encoder = load_text_encoder(enc_cfg)
        backbone = encoder.backbone
        adapter_cfg = AdapterConfig(cfg.rank, cfg.alpha)
        names = attach(backbone, adapter_cfg)
        head = nn.Sequential(nn.Dropout(0.1), nn.Linear(encoder.hidden_size, 1))
        params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
        log.info(
            "tuning a rank-%d text adapter on %s: %d layers, %d numbers, %d train / %d valid texts",
            cfg.rank, cfg.encoder, len(names), sum(p.numel() for p in params), len(train), len(valid),
        )  # fmt: skip

        def predict_batch(texts: list[str]) -> torch.Tensor:
            b = tokenizer(
                texts, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
            )
            h = backbone(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            return head((h * mask).sum(1) / mask.sum(1).clamp_min(1.0)).squeeze(-1)

        @torch.no_grad()
        def predict(texts: list[str]) -> np.ndarray:
            backbone.eval()
            head.eval()
            order = np.argsort([len(t) for t in texts])
            out = np.zeros(len(texts))
            for i in range(0, len(texts), 64):
                idx = order[i : i + 64]
                out[idx] = predict_batch([texts[j] for j in idx]).numpy()
            return out

        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
        steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
        warmup = max(1, min(WARMUP_STEPS, steps // 4))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps)
        )
        loss_fn = LOSSES[cfg.loss]
        epochs: list[dict[str, Any]] = []
        best, best_mae = None, math.inf
        t0 = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            backbone.train()
            head.train()
            total = 0.0
            for batch in _batches(train, cfg.batch_size, rng):
                texts = [train.texts[i] for i in batch]
                y = torch.tensor(train.labels[batch], dtype=torch.float32)
                loss = loss_fn(predict_batch(texts), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(batch)
            pred = predict(valid.texts)
            mae = float(np.mean(np.abs(pred - valid.labels)))
            epochs.append(
                {
                    "epoch": epoch,
                    f"train_{cfg.loss}": round(total / len(train), 4),
                    "valid_mae": round(mae, 4),
                    **({"valid_by_source": by_source(pred, valid)} if valid.sources else {}),
                }
            )
            log.info("text adapter epoch %d: %s", epoch, epochs[-1])
            if mae < best_mae:
                best, best_mae = adapter_tensors(backbone), mae
        assert best is not None
        digest = save_adapter(best, adapter_cfg, cfg.encoder, path)
        best_epoch = min(epochs, key=lambda e: e["valid_mae"])["epoch"]
        return {
            "settings": asdict(cfg),
            "train_texts": len(train),
            "valid_texts": len(valid),
            "epochs": epochs,
            "best_epoch": best_epoch,
            "seconds": round(time.perf_counter() - t0, 1),
            "digest": digest,
        }
    finally:
        torch.set_num_threads(threads)


def _batches(data: Texts, size: int, rng: random.Random) -> list[np.ndarray]:
    """Shuffled batches of similar-length texts (less padding): sort within chunks of 8 batches."""
    order = list(range(len(data)))
    rng.shuffle(order)
    out = []
    for i in range(0, len(order), size * 8):
        chunk = sorted(order[i : i + size * 8], key=lambda j: len(data.texts[j]))
        out += [np.array(chunk[k : k + size]) for k in range(0, len(chunk), size)]
    rng.shuffle(out)
    return out
