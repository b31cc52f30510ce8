"""Training on several processes: ``torchrun --nproc-per-node N --no-python fine train ...``.

``fine train`` calls :func:`setup` first: under torchrun (``WORLD_SIZE`` > 1 in the environment) it
joins the process group (gloo on CPU, NCCL when CUDA is available) and the trainer then works on
:func:`current`:

* **sampler**: every rank computes the same global batch order (same seed, same bucketing) and takes
  its contiguous share of each global batch (:meth:`Dist.shard`); ``--batch-size`` is the *global*
  batch, so N processes see exactly the batches one process would see.
* **model step**: the model is wrapped in ``DistributedDataParallel`` (gradients averaged over ranks
  during backward); the loss's own trainable parameters (InfoNCE heads, decoders) are averaged with
  one all-reduce before clipping, so every rank takes the same optimiser step.
* **MI critic step**: each rank computes the critic loss on its share (detached features), the critic
  gradients are averaged over ranks, then every rank steps: the critics stay identical everywhere.
* **contrastive queue**: filled from *all* ranks: each step gathers the fused features and labels of
  the whole global batch (rank order = the global batch order) and every rank enqueues them, so each
  rank's queue equals the one-process queue. In-batch negatives of the MI estimators are the rank's
  share only (as in most DDP contrastive training), which is why N processes differ slightly from one.
* **rank 0 only**: validation (its loss is broadcast, so every rank makes the same early-stopping
  decision), ``log.csv``, checkpoints, ``best/``, the artifact and metrics. A checkpoint holds no
  per-rank state, so a run resumes with any number of processes. ``world.json`` in the run directory
  records the world size of every (re)start.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as tdist
from torch import nn

from core.artifact import atomic_write_bytes

log = logging.getLogger(__name__)

WORLD_FILE = "world.json"


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- data ---------------------------------------------------------------------------------------
    def shard(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """This rank's contiguous share of every global batch (a batch smaller than the world is
        padded by repetition, as torch's DistributedSampler pads, so every rank steps together)."""
        out = []
        for idx in batches:
            if len(idx) < self.world_size:
                idx = np.resize(idx, self.world_size)
            out.append(np.array_split(idx, self.world_size)[self.rank])
        return out

    # -- model --------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.local_rank] if self.backend == "nccl" else None
        # unused parameters: absent-modality tokens are used only by batches with that modality absent
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def average_grads(self, params: Iterable[nn.Parameter]) -> bool:
        """Average the gradients of ``params`` over ranks (a rank without a gradient adds zeros).
        Returns whether any rank had one. Collective: every rank must call it."""
        params = [p for p in params if p.requires_grad]
        had = float(any(p.grad is not None for p in params))
        ref = params[0] if params else torch.zeros(())
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
            + [torch.tensor([had], dtype=ref.dtype, device=ref.device)]
        )
        tdist.all_reduce(flat)
        any_grad = bool(flat[-1] > 0)
        flat = flat[:-1] / self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            if any_grad:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n
        return any_grad

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``x`` (first dims may differ) in rank order."""
        x = x.detach().contiguous()
        n = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        tdist.all_gather(sizes, n)
        top = int(max(int(s) for s in sizes))
        pad = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=x.device)
        pad[: x.shape[0]] = x
        parts = [torch.zeros_like(pad) for _ in range(self.world_size)]
        tdist.all_gather(parts, pad)
        return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])

    def gather_for_queue(self, out: Any, labels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The model output with ``fused`` of the whole global batch, and its labels."""
        return replace(out, fused=self.gather_rows(out.fused)), self.gather_rows(labels)

    # -- scalars ------------------------------------------------------------------------------------
    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Per-key mean over ranks (every rank has the same keys)."""
        keys = list(values)  # the same insertion order on every rank
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        tdist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    def broadcast(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        tdist.broadcast(t, 0)
        return float(t.item())

    def all_true(self, flag: bool) -> bool:
        t = torch.tensor([0.0 if flag else 1.0])
        tdist.all_reduce(t)
        return bool(t.item() == 0)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def setup() -> Dist | None:
    """Join the torchrun process group when launched by torchrun with more than one process."""
    if tdist.is_available() and tdist.is_initialized():
        return current()
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 or "RANK" not in os.environ or not tdist.is_available():
        return None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    tdist.init_process_group(backend)
    dist = current()
    assert dist is not None
    if not dist.main:  # one voice on the terminal: other ranks only warn
        logging.getLogger().setLevel(logging.WARNING)
    log.info("distributed training: %d processes (%s)", dist.world_size, backend)
    return dist


def current() -> Dist | None:
    """The process group this process trains in, or None for a single process."""
    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() <= 1:
        return None
    return Dist(tdist.get_rank(), tdist.get_world_size(), _env_int("LOCAL_RANK", 0), tdist.get_backend())


def teardown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def is_main() -> bool:
    d = current()
    return d is None or d.main


def record_world(run_dir: Path, dist: Dist | None, start_epoch: int, global_batch: int) -> None:
    """Append this (re)start's world size to ``RUN/world.json`` (rank 0 calls it)."""
    path = run_dir / WORLD_FILE
    try:
        doc = json.loads(path.read_text()) if start_epoch > 0 and path.exists() else {}
    except (OSError, json.JSONDecodeError):
        doc = {}
    size = 1 if dist is None else dist.world_size
    entry = {
        "world_size": size,
        "backend": None if dist is None else dist.backend,
        "global_batch_size": global_batch,
        "per_rank_batch_size": -(-global_batch // size),
        "from_epoch": start_epoch,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    doc = {"world_size": size, "runs": [*doc.get("runs", []), entry]}
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
