"""``fine score ... --ray [ADDRESS]``: the same batch scoring, one Ray task per input.

Each Ray worker is an actor that loads the models once (a :class:`~app.pipeline.batch.BatchScorer`)
and runs :meth:`BatchScorer.score_input` — the very step a local run loops over — so the outputs are
written by the same atomic writers into the same ``OUT/<key>/`` layout, ``--resume`` is decided the
same way, and the driver writes ``OUT/summary.csv``/``.json`` (input order) after every finished input.

Every worker declares its resources: ``threads`` CPUs (and ``gpus_per_worker`` GPUs) for its lifetime.
A worker process that dies (killed, out of memory, a node lost) is restarted by Ray, reloading its
models; the driver resubmits the input it was scoring, up to ``retries`` times, then marks that input
``failed`` with the reason (an ``internal error`` reason, so ``--resume`` tries it again). Finished
inputs are never touched again. On a cluster, ``OUT``, the inputs and ``--model`` must be at the same
path on every node (a shared filesystem), and fine-msa installed on every node.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.pipeline.config import ScoreConfig
from app.pipeline.outdir import OutputLock, sweep_stale_temps
from app.pipeline.resume import INTERNAL
from app.pipeline.summary import InputResult, write_summary
from core.errors import FineError

log = logging.getLogger(__name__)

# A local Ray started by `fine score --ray` (no address): small object store (inputs and results are
# paths and summary rows, never media), no dashboard.
LOCAL_OBJECT_STORE_BYTES = 96 * 1024 * 1024
PROBE_WAIT_S = 0.5  # between readiness probes of a restarting worker


@dataclass(frozen=True)
class RayOptions:
    """``address``: None starts a local Ray; else ``auto`` or ``HOST:PORT`` of a running cluster.
    ``workers``: actors (default: as many as the cluster's CPUs allow at ``threads`` CPUs each)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    retries: int = 1
    local_cpus: int | None = None  # CPUs a local Ray may use (default: all)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise FineError(f"--ray-workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise FineError(f"--ray-retries must be >= 0, got {self.retries}")
        if self.gpus_per_worker < 0:
            raise FineError(f"--ray-gpus must be >= 0, got {self.gpus_per_worker}")


class ScoreWorker:
    """One Ray actor: models loaded once, then one input per call."""

    def __init__(self, model: str | None, config: ScoreConfig) -> None:
        from app.assets import resolve_model
        from app.pipeline.batch import BatchScorer
        from app.pipeline.scorer import Scorer

        scorer = Scorer(resolve_model(model), config.backend, threads=config.threads)
        self.batch = BatchScorer(scorer, config)

    def score(self, path: str, target: str, resume: bool) -> InputResult:
        return self.batch.score_input(Path(path), Path(target), resume)

    def pid(self) -> int:
        return os.getpid()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FineError(
            "--ray needs the ray package: pip install 'fine-msa[ray]' (or pip install ray)"
        ) from None
    return ray


def connect(opts: RayOptions) -> Any:
    """Join the cluster at ``opts.address``, or start a small local Ray (or use the one already up)."""
    ray = _ray()
    if opts.address not in (None, "auto"):
        _check_reachable(opts.address)
    if ray.is_initialized():
        return ray
    quiet = {"include_dashboard": False, "configure_logging": True, "logging_level": logging.WARNING}
    try:
        if opts.address is None:
            ray.init(num_cpus=opts.local_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
        else:
            ray.init(address=opts.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = opts.address or "a local Ray"
        first = (str(exc).strip().splitlines() or [""])[0]
        raise FineError(f"--ray {where}: cannot connect ({first})") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in one line now rather than after Ray's own minute-long connection retries."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise FineError(f"--ray {address}: expected HOST:PORT of the cluster's head node (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise FineError(
            f"--ray {address}: cannot reach the Ray head node ({exc.strerror or exc}); "
            "start it with 'ray start --head' or check the address"
        ) from None


def worker_count(ray: Any, opts: RayOptions, threads: int, inputs: int) -> int:
    if opts.workers is not None:
        return min(opts.workers, inputs)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(cpus // threads, inputs))


def score_on_ray(
    inputs: Sequence[tuple[Path, str]],
    out: Path,
    model: Path | None,
    config: ScoreConfig,
    opts: RayOptions,
    resume: bool = False,
    progress: bool = True,
) -> list[InputResult]:
    """Score ``inputs`` into ``out`` on Ray; the results in input order (as ``BatchScorer.run``).
    The driver holds ``out``'s :class:`OutputLock` for the whole run."""
    with OutputLock(out):
        return _score_on_ray(inputs, out, model, config, opts, resume, progress)


def _score_on_ray(
    inputs: Sequence[tuple[Path, str]],
    out: Path,
    model: Path | None,
    config: ScoreConfig,
    opts: RayOptions,
    resume: bool,
    progress: bool,
) -> list[InputResult]:
    from tqdm import tqdm

    ray = connect(opts)
    removed = sweep_stale_temps(out)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, out)
    n = worker_count(ray, opts, config.threads, len(inputs))
    actor = ray.remote(ScoreWorker).options(
        num_cpus=config.threads, num_gpus=opts.gpus_per_worker, max_restarts=-1, max_task_retries=0
    )
    model_arg = None if model is None else str(model.resolve())
    workers = [actor.remote(model_arg, config) for _ in range(n)]
    results: list[InputResult | None] = [None] * len(inputs)
    attempts = [0] * len(inputs)
    pending = list(range(len(inputs)))[::-1]  # popped from the end: input order
    # ref -> (input index or None, worker, is_probe). After a worker died, a probe (its pid()) waits
    # until Ray has restarted it before it gets work again: calls made while it restarts fail at once.
    running: dict[Any, tuple[int | None, Any, bool]] = {}

    def submit(worker: Any, i: int | None) -> None:
        if i is None:
            if not pending:
                return
            i = pending.pop()
        path, key = inputs[i]
        attempts[i] += 1
        ref = worker.score.remote(str(path.resolve()), str((out / key).resolve()), resume)
        running[ref] = (i, worker, False)

    def probe(worker: Any, i: int | None) -> None:
        running[worker.pid.remote()] = (i, worker, True)

    def finish(i: int, res: InputResult) -> None:
        res.input = str(inputs[i][0])  # as given (the worker got it resolved), as a local run reports it
        # a worker killed mid-write on an earlier attempt left its temporaries here; this input's folder
        # has no writer left now that it returned
        sweep_stale_temps(out / inputs[i][1])
        if attempts[i] > 1 and res.status != "failed":
            note = f"retried: worker died {attempts[i] - 1} time(s)"
            res.reason = f"{res.reason}; {note}" if res.reason else note
        results[i] = res
        write_summary(out, [r for r in results if r is not None])

    for w in workers:
        submit(w, None)
    desc = f"scoring on {n} Ray workers"
    try:
        with tqdm(total=len(inputs), desc=desc, unit="file", disable=not progress) as bar:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                i, worker, is_probe = running.pop(ready[0])
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:  # raised in our code: OSError is fatal
                    if isinstance(exc.cause, OSError):
                        raise exc.cause from None
                    raise
                except ray.exceptions.RayError as exc:  # the worker process died (or is restarting)
                    if is_probe:
                        time.sleep(PROBE_WAIT_S)
                        probe(worker, i)
                        continue
                    assert i is not None
                    path, key = inputs[i]
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    if attempts[i] <= opts.retries:
                        log.warning(
                            "%s: worker died (%s); retrying it (attempt %d)", path, first, attempts[i] + 1
                        )
                        probe(worker, i)
                        continue
                    reason = f"{INTERNAL} (worker died {attempts[i]} times: {type(exc).__name__}: {first})"
                    log.warning("%s: failed: %s", path, reason)
                    finish(i, InputResult(str(path), key, "failed", reason=reason))
                    bar.update(1)
                    probe(worker, None)
                    continue
                if is_probe:
                    submit(worker, i)
                    continue
                assert i is not None
                finish(i, value)
                bar.set_postfix_str(inputs[i][0].name[:40])
                bar.update(1)
                submit(worker, None)
    finally:
        for w in workers:
            ray.kill(w)
    return [r for r in results if r is not None]
