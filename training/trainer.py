"""A trainer that does not know which model it trains (minGPT style), with FINE's two-step update.

Per batch: (1) if the loss has critics (NCE-CLUB), one inner step of their own optimiser on detached
features; (2) the model step on the full loss with gradient clipping; (3) the loss's post-step hook
(the contrastive queue update). Selection is by validation loss only (never the test set); the best
weights are kept in memory and restored at the end. Callbacks get every event by name.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import ConfigError
from training.data import Dataset, iterate_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    max_steps: int | None = None  # stop after this many optimiser steps (demo runs, tests)
    batch_size: int = 32
    lr: float = 1e-3
    lr_text: float = 2e-5  # the pretrained text encoder's parameter group
    critic_lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 8  # epochs without a better validation loss before stopping
    seed: int = 1111
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        for name in ("lr", "lr_text", "critic_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("train.grad_clip and train.weight_decay must be >= 0")


@dataclass
class TrainResult:
    best_epoch: int
    best_valid_loss: float
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


Callback = Callable[[str, dict[str, Any]], None]


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class Trainer:
    """``Trainer(model, loss, config).fit(train, valid)``.

    ``loss(out, labels)`` returns an object with ``.total`` and ``.terms``; optional methods used when
    present: ``critic_parameters()``, ``critic_loss(out, labels)``, ``main_parameters()``,
    ``update_queue(out, labels)``.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, config: TrainConfig | None = None) -> None:
        self.model, self.loss, self.cfg = model, loss, config or TrainConfig()
        self.callbacks: list[Callback] = []
        self.step = 0
        text_params = [
            p for n, p in model.named_parameters() if n.startswith("text_encoder.") and p.requires_grad
        ]
        text_ids = {id(p) for p in text_params}
        other = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
        main_loss_params = (
            loss.main_parameters() if hasattr(loss, "main_parameters") else list(loss.parameters())
        )
        groups: list[dict[str, Any]] = [{"params": other + list(main_loss_params), "lr": self.cfg.lr}]
        if text_params:
            groups.append({"params": text_params, "lr": self.cfg.lr_text})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        critic = loss.critic_parameters() if hasattr(loss, "critic_parameters") else []
        self.critic_optimizer = torch.optim.Adam(critic, lr=self.cfg.critic_lr) if critic else None

    def add_callback(self, cb: Callback) -> None:
        self.callbacks.append(cb)

    def _emit(self, event: str, **info: Any) -> None:
        for cb in self.callbacks:
            cb(event, info)

    def train_step(self, batch: Any) -> dict[str, float]:
        self.model.train()
        self.loss.train()
        labels = batch.labels
        out = self.model(batch)
        if self.critic_optimizer is not None:
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss = self.loss.critic_loss(out, labels)
            if critic_loss.requires_grad:
                critic_loss.backward()
                self.critic_optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.loss(out, labels)
        if not torch.isfinite(result.total):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {result.terms}")
        result.total.backward()
        if self.cfg.grad_clip > 0:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()
        if hasattr(self.loss, "update_queue"):
            self.loss.update_queue(out, labels)
        self.step += 1
        return {"loss": float(result.total), **{k: float(v) for k, v in result.terms.items()}}

    @torch.no_grad()
    def predict(self, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and labels for a whole split (eval mode)."""
        self.model.eval()
        preds, labels = [], []
        for batch in iterate_batches(data, self.cfg.eval_batch_size, shuffle=False):
            preds.append(self.model(batch).score.float().cpu().numpy())
            labels.append(batch.labels.numpy())
        return np.concatenate(preds), np.concatenate(labels)

    def valid_loss(self, data: Dataset) -> float:
        pred, y = self.predict(data)
        return float(np.mean((pred - y) ** 2))

    def fit(self, train: Dataset, valid: Dataset | None = None) -> TrainResult:
        rng = seed_everything(self.cfg.seed)
        start = time.perf_counter()
        best, best_epoch, best_state, bad_epochs = math.inf, -1, None, 0
        history: list[dict[str, float]] = []
        for epoch in range(self.cfg.epochs):
            sums: dict[str, float] = {}
            n = 0
            for batch in iterate_batches(train, self.cfg.batch_size, shuffle=True, generator=rng):
                for k, v in self.train_step(batch).items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                self._emit("step", step=self.step, epoch=epoch)
                if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                    break
            row = {
                "epoch": float(epoch),
                "step": float(self.step),
                **{f"train_{k}": v / max(n, 1) for k, v in sums.items()},
            }
            if valid is not None and len(valid):
                row["valid_loss"] = self.valid_loss(valid)
                if row["valid_loss"] < best:
                    best, best_epoch, bad_epochs = row["valid_loss"], epoch, 0
                    best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    bad_epochs += 1
            history.append(row)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
            self._emit("epoch", **row)
            if bad_epochs >= self.cfg.patience or (
                self.cfg.max_steps is not None and self.step >= self.cfg.max_steps
            ):
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return TrainResult(best_epoch, best, self.step, time.perf_counter() - start, history)
