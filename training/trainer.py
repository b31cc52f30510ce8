"""A trainer that does not know which model it trains (minGPT style), with FINE's two-step update.

Per batch: (1) if the loss has critics (NCE-CLUB), one inner step of their own optimiser on detached
features; (2) the model step on the full loss with gradient clipping; (3) the loss's post-step hook
(the contrastive queue update). A loss whose ``critic_schedule`` is ``"epoch"`` (MMIM's Barber–Agakov
networks) instead gets a whole pass over the training set with its critic optimiser at the start of
every epoch. Selection is by validation loss only (never the test set).

With a run directory the trainer also writes, after every epoch: ``log.csv`` (one row per epoch),
``best/`` (the weights with the lowest validation loss so far) and ``checkpoint/`` (model, loss state,
both optimisers, RNG states and the history), from which ``fit(..., resume=True)`` continues an
interrupted run exactly where the last finished epoch left it. Everything is safetensors + JSON.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.artifact import atomic_write_bytes, load_tensors, save_tensors
from core.config import ConfigError
from core.errors import InputError, check, check_at_least
from training import distributed
from training.data import Dataset, batch_order, collate
from training.robust import RobustTraining

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
    # unimodal warm-up: the first epochs train on the samples that hold one modality only (each branch
    # and its unimodal head on its own labelled data), then fusion on everything; the best epoch and the
    # patience count only after it
    warmup_epochs: int = 0
    seed: int = 1111
    eval_batch_size: int = 64
    bucket: bool = True  # batch similar lengths together (less padding; big win for text encoders)
    progress: bool = False  # tqdm bar over the batches of each epoch (stderr)

    def __post_init__(self) -> None:
        check_at_least(self, "train", "epochs batch_size patience eval_batch_size")
        check(
            self.max_steps is None or self.max_steps >= 1,
            f"train.max_steps must be >= 1 or null, got {self.max_steps}",
        )
        for name in ("lr", "lr_text", "critic_lr"):
            check(getattr(self, name) > 0, f"train.{name} must be > 0, got {getattr(self, name)}")
        check(
            self.grad_clip >= 0 and self.weight_decay >= 0,
            "train.grad_clip and train.weight_decay must be >= 0",
        )
        check(
            0 <= self.warmup_epochs < self.epochs,
            f"train.warmup_epochs must be in [0, epochs), got {self.warmup_epochs}",
        )


def unimodal_part(data: Dataset) -> Dataset:
    """The samples of ``data`` that hold exactly one modality (the warm-up's data); all of ``data`` when
    it has none (a warm-up on nothing would skip training)."""
    idx = [i for i, s in enumerate(data.samples) if sum(x is not None for x in s.features.values()) == 1]
    if not idx:
        log.warning("%s has no single-modality samples: the warm-up trains on everything", data.name)
        return data
    log.info("unimodal warm-up on %d of %d samples", len(idx), len(data))
    return data.subset(idx)


@dataclass
class TrainResult:
    best_epoch: int
    best_valid_loss: float
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


Callback = Callable[[str, dict[str, Any]], None]


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without a frozen pretrained text encoder (reloaded from its source)."""
    state = model.state_dict()
    enc = getattr(model, "text_encoder", None)
    if enc is not None and not getattr(enc, "finetune", True):
        state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    return {k: v.detach().clone() for k, v in state.items()}


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict, prefix: str) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


@torch.no_grad()
def predict(
    model: nn.Module, data: Dataset, batch_size: int = 64, bucket: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``model(batch).score`` for every sample of ``data`` in order, and the labels (eval mode)."""
    model.eval()
    preds = np.zeros(len(data), dtype=np.float64)
    for idx in batch_order(data, batch_size, False, bucket=bucket):
        batch = collate([data.samples[i] for i in idx], data.feature_dims)
        preds[idx] = model(batch).score.float().cpu().numpy()
    return preds, data.labels()


class Trainer:
    """``Trainer(model, loss, config, run_dir=None).fit(train, valid, resume=False)``.

    ``loss(out, labels)`` returns an object with ``.total`` and ``.terms``; optional methods used when
    present: ``critic_parameters()``, ``critic_loss(out, labels)``, ``main_parameters()``,
    ``update_queue(out, labels)``, and the attributes ``critic_schedule`` (``"batch"``/``"epoch"``) and
    ``valid_criterion`` (``"mse"``/``"mae"``: what "validation loss" means for selection).

    ``robust`` (:class:`training.robust.RobustTraining`) trains for missing input: without distillation
    each training batch is corrupted before the step; with it, the complete batch is the teacher pass
    and the robust object adds the student pass and its loss. Validation always sees complete input.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        config: TrainConfig | None = None,
        run_dir: str | Path | None = None,
        robust: RobustTraining | None = None,
    ) -> None:
        self.model, self.loss, self.cfg = model, loss, config or TrainConfig()
        self.robust = robust if robust is not None and robust.cfg.enabled else None
        self.run_dir = Path(run_dir) if run_dir is not None else None
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
        self.critic_schedule = getattr(loss, "critic_schedule", "batch")
        # under torchrun (training/distributed.py): the model step runs through DDP
        self.dist = distributed.current()
        self.net = self.dist.wrap(model) if self.dist is not None else model
        self._loss_params = list(main_loss_params)
        if self.dist is not None and self.robust is not None and self.robust.cfg.distill:
            raise ConfigError("self-distillation (--distill) is not supported under torchrun yet")

    def add_callback(self, cb: Callback) -> None:
        self.callbacks.append(cb)

    def _emit(self, event: str, **info: Any) -> None:
        for cb in self.callbacks:
            cb(event, info)

    # -- steps -------------------------------------------------------------------------------------
    def _critic_step(self, out: Any, labels: torch.Tensor) -> None:
        assert self.critic_optimizer is not None
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss = self.loss.critic_loss(out, labels)
        if critic_loss.requires_grad:
            critic_loss.backward()
        stepped = critic_loss.requires_grad
        if self.dist is not None:  # the same critic step on every rank
            stepped = self.dist.average_grads(
                p for g in self.critic_optimizer.param_groups for p in g["params"]
            )
        if stepped:
            self.critic_optimizer.step()

    def train_step(self, batch: Any) -> dict[str, float]:
        self.model.train()
        self.loss.train()
        distill = self.robust is not None and self.robust.cfg.distill
        if self.robust is not None and not distill:
            batch = self.robust.corrupt(batch)  # a cross-corpus pair's label follows its remaining parts
        labels = batch.labels
        out = self.net(batch)
        if self.critic_optimizer is not None and self.critic_schedule == "batch":
            self._critic_step(out, labels)
        self.optimizer.zero_grad(set_to_none=True)
        result = self.loss(out, labels, batch.part_labels)
        total, terms = result.total, dict(result.terms)
        if distill:
            assert self.robust is not None
            extra, extra_terms = self.robust.distill_loss(self.model, batch, out)
            total = total + extra
            terms.update(extra_terms)
        finite = bool(torch.isfinite(total))
        if self.dist is not None:
            finite = self.dist.all_true(finite)  # every rank stops together
        if not finite:
            raise FloatingPointError(f"non-finite loss at step {self.step}: {terms}")
        total.backward()
        if self.dist is not None:  # DDP averaged the model's gradients; the loss's own ones here
            self.dist.average_grads(self._loss_params)
        if self.cfg.grad_clip > 0:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()
        if hasattr(self.loss, "update_queue"):
            if self.dist is not None:  # the queue gets the whole global batch on every rank
                out, labels = self.dist.gather_for_queue(out, labels)
            self.loss.update_queue(out, labels)
        self.step += 1
        return {"loss": total.item(), **{k: float(v) for k, v in terms.items()}}

    def critic_epoch(self, train: Dataset, rng: np.random.Generator) -> None:
        """One pass of the critic optimiser over ``train`` with the model's features detached."""
        self.model.train()
        self.loss.train()
        for idx in self._batches(train, rng):
            batch = collate([train.samples[i] for i in idx], train.feature_dims)
            with torch.no_grad():
                out = self.model(batch)
            self._critic_step(out, batch.labels)

    def _batches(self, train: Dataset, rng: np.random.Generator) -> list[np.ndarray]:
        """The epoch's batches (with torchrun: this rank's share of each global batch)."""
        batches = batch_order(train, self.cfg.batch_size, True, rng, self.cfg.bucket)
        return self.dist.shard(batches) if self.dist is not None else batches

    def _valid_loss(self, valid: Dataset) -> float:
        """Validation on rank 0; every rank gets its loss (and so makes the same early-stopping call)."""
        if self.dist is None:
            return self.valid_loss(valid)
        return self.dist.broadcast(self.valid_loss(valid) if self.dist.main else 0.0)

    def predict(self, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and labels for a whole split, in the split's order (eval mode)."""
        return predict(self.model, data, self.cfg.eval_batch_size, self.cfg.bucket)

    def valid_loss(self, data: Dataset) -> float:
        pred, y = self.predict(data)
        if getattr(self.loss, "valid_criterion", "mse") == "mae":
            return float(np.mean(np.abs(pred - y)))
        return float(np.mean((pred - y) ** 2))

    # -- run directory -----------------------------------------------------------------------------
    def _save_checkpoint(self, state: dict[str, Any], rng: np.random.Generator) -> None:
        assert self.run_dir is not None
        new, cur, old = (self.run_dir / n for n in ("checkpoint.new", "checkpoint", "checkpoint.old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        save_tensors(new / "model.safetensors", _trainable_state(self.model))
        save_tensors(new / "loss.safetensors", dict(self.loss.state_dict()))
        tensors, meta = _optimizer_tensors(self.optimizer, "main")
        if self.critic_optimizer is not None:
            t2, meta["critic"] = _optimizer_tensors(self.critic_optimizer, "critic")
            tensors.update(t2)
        tensors["rng.torch"] = torch.get_rng_state()
        save_tensors(new / "optim.safetensors", tensors)
        trainer_state = {**state, "step": self.step, "optim": meta, "numpy_rng": rng.bit_generator.state}
        atomic_write_bytes(new / "trainer.json", json.dumps(trainer_state).encode())
        if cur.exists():
            shutil.rmtree(old, ignore_errors=True)
            cur.rename(old)
        new.rename(cur)
        shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, rng: np.random.Generator) -> dict[str, Any] | None:
        assert self.run_dir is not None
        path = next(
            (self.run_dir / n for n in ("checkpoint", "checkpoint.old") if (self.run_dir / n).is_dir()), None
        )
        if path is None or not (path / "trainer.json").exists():
            return None
        try:
            state = json.loads((path / "trainer.json").read_text())
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path / 'trainer.json'}: corrupt checkpoint ({exc}); delete it to start over"
            ) from None
        self.model.load_state_dict(load_tensors(path / "model.safetensors"), strict=False)
        self.loss.load_state_dict(load_tensors(path / "loss.safetensors"))
        tensors = load_tensors(path / "optim.safetensors")
        meta = state.pop("optim")
        self.optimizer.load_state_dict(_optimizer_state(tensors, meta, "main"))
        if self.critic_optimizer is not None and "critic" in meta:
            self.critic_optimizer.load_state_dict(_optimizer_state(tensors, meta["critic"], "critic"))
        torch.set_rng_state(tensors["rng.torch"])
        rng.bit_generator.state = state.pop("numpy_rng")
        self.step = int(state.pop("step"))
        return state

    def _append_log(self, row: dict[str, float]) -> None:
        assert self.run_dir is not None
        path = self.run_dir / "log.csv"
        new = not path.exists()
        if not new:
            with open(path, newline="") as fh:
                fields = next(csv.reader(fh), list(row))
        else:
            fields = list(row)
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: f"{v:.6g}" for k, v in row.items()})

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self, train: Dataset, valid: Dataset | None = None, resume: bool = False) -> TrainResult:
        rng = seed_everything(self.cfg.seed)
        start = time.perf_counter()
        st: dict[str, Any] = {"epoch": -1, "best": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
        best_state: dict[str, torch.Tensor] | None = None
        main = self.dist is None or self.dist.main
        if self.run_dir is not None:
            if main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            loaded = self._load_checkpoint(rng) if resume else None
            if loaded is not None:
                st = loaded
                log.info("resuming %s after epoch %d (step %d)", self.run_dir, st["epoch"], self.step)
                if (self.run_dir / "best" / "model.safetensors").exists():
                    best_state = load_tensors(self.run_dir / "best" / "model.safetensors")
            elif not resume and main:
                (self.run_dir / "log.csv").unlink(missing_ok=True)
            if main:
                distributed.record_world(self.run_dir, self.dist, st["epoch"] + 1, self.cfg.batch_size)
        if self.dist is not None and self.dist.rank > 0:  # own dropout masks; rank 0 draws as one process
            torch.manual_seed(self.cfg.seed + 7919 * self.dist.rank + self.step)
        done = st["bad_epochs"] >= self.cfg.patience or (
            self.cfg.max_steps is not None and self.step >= self.cfg.max_steps
        )
        unimodal = unimodal_part(train) if self.cfg.warmup_epochs else train
        for epoch in range(st["epoch"] + 1, self.cfg.epochs):
            if done:
                break
            warm = epoch < self.cfg.warmup_epochs
            row = self._train_epoch(unimodal if warm else train, epoch, rng)
            if valid is not None and len(valid):
                row["valid_loss"] = self._valid_loss(valid)
                if warm:
                    pass  # the model has not seen a fused sample yet: not a candidate
                elif row["valid_loss"] < st["best"]:
                    st.update(best=row["valid_loss"], best_epoch=epoch, bad_epochs=0)
                    best_state = _trainable_state(self.model)
                    if self.run_dir is not None and main:
                        save_tensors(self.run_dir / "best" / "model.safetensors", best_state)
                else:
                    st["bad_epochs"] += 1
            row["seconds"] = time.perf_counter() - start
            st["history"].append(row)
            st["epoch"] = epoch
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
            if self.run_dir is not None and main:
                self._append_log(row)
                self._save_checkpoint(st, rng)
            self._emit("epoch", **row)
            done = st["bad_epochs"] >= self.cfg.patience or (
                self.cfg.max_steps is not None and self.step >= self.cfg.max_steps
            )
        if best_state is not None:
            self.model.load_state_dict(best_state, strict=False)
        self.model.eval()
        return TrainResult(
            st["best_epoch"], st["best"], self.step, time.perf_counter() - start, list(st["history"])
        )

    def _train_epoch(self, train: Dataset, epoch: int, rng: np.random.Generator) -> dict[str, float]:
        if self.critic_optimizer is not None and self.critic_schedule == "epoch":
            self.critic_epoch(train, rng)
        batches = self._batches(train, rng)
        sums: dict[str, float] = {}
        n = 0
        bar = None
        if self.cfg.progress and (self.dist is None or self.dist.main):
            from tqdm import tqdm

            bar = tqdm(total=len(batches), desc=f"epoch {epoch}", leave=False, unit="batch")
        for idx in batches:
            batch = collate([train.samples[i] for i in idx], train.feature_dims)
            for k, v in self.train_step(batch).items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / n:.3f}")
            self._emit("step", step=self.step, epoch=epoch)
            if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                break
        if bar is not None:
            bar.close()
        means = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
        if self.dist is not None:
            means = self.dist.mean(means)
        return {"epoch": float(epoch), "step": float(self.step), **means}
