"""``fine score --ray`` on a local Ray with 2 workers: the same timelines as a local run, and a worker
killed mid-input (SIGKILL, found by Ray's process title) is restarted and its input retried."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from app.pipeline.cli import main

NAMES = ("tts_positive_en.wav", "face_crying_plus_tts_negative.mp4", "single_face.mp4")
SUMMARY_KEYS = ("input", "key", "status", "units", "duration", "mean_score", "min_score", "max_score")


@pytest.fixture(scope="module")
def local_ray() -> object:
    """A small local Ray (2 CPUs, no dashboard) for the module; `fine score --ray` joins it."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=96 * 1024 * 1024, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _score(out: Path, inputs: list[Path], *extra: str) -> dict[str, dict]:
    rc = main([*map(str, inputs), "--out", str(out), "--no-progress", "--threads", "1", *extra])
    assert rc == 0
    return {r["key"]: r for r in json.loads((out / "summary.json").read_text())["inputs"]}


def _rows(out: Path, key: str) -> tuple[str, list[dict]]:
    doc = json.loads((out / key / "timeline.json").read_text())
    return doc["status"], doc["rows"]


@pytest.fixture(scope="module")
def local_run(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("local")
    return out, _score(out, [samples_dir / n for n in NAMES])


def _same_as_local(local: tuple[Path, dict], out: Path, summary: dict[str, dict]) -> None:
    lout, lsum = local
    assert list(summary) == list(lsum)  # input order, as a local run
    assert {s["status"] for s in lsum.values()} == {"complete", "no_speech"}
    for key, want in lsum.items():
        assert {k: summary[key][k] for k in SUMMARY_KEYS} == {k: want[k] for k in SUMMARY_KEYS}
        assert _rows(out, key) == _rows(lout, key)  # every row and number identical
        have = sorted(p.name for p in (out / key).iterdir())
        assert have == sorted(p.name for p in (lout / key).iterdir())  # same files, no temporaries


@pytest.mark.slow
def test_ray_gives_the_local_timelines(
    local_ray: object, local_run: tuple[Path, dict], samples_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    summary = _score(out, [samples_dir / n for n in NAMES], "--ray", "--ray-workers", "2")
    _same_as_local(local_run, out, summary)
    assert all("retried" not in s["reason"] for s in summary.values())
    # --resume reads every input back instead of recomputing it, as a local run does
    again = _score(out, [samples_dir / n for n in NAMES], "--ray", "--ray-workers", "2", "--resume")
    assert all(s["reason"].endswith("resumed: not recomputed") for s in again.values())


def _worker_pids(method: str) -> list[int]:
    """Processes whose title Ray set to ``ray::ScoreWorker.<method>`` (running that call now)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(f"ray::ScoreWorker.{method}"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_retried(
    local_ray: object, local_run: tuple[Path, dict], samples_dir: Path, tmp_path: Path
) -> None:
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            pids = _worker_pids("score")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = tmp_path / "ray-killed"
    try:
        summary = _score(out, [samples_dir / n for n in NAMES], "--ray", "--ray-workers", "2")
    finally:
        stop.set()
        thread.join()
    assert killed, "no scoring worker was seen running"
    _same_as_local(local_run, out, summary)
    retried = [s for s in summary.values() if "retried: worker died 1 time(s)" in s["reason"]]
    assert len(retried) == 1  # the input the killed worker was scoring, scored again to completion


def test_an_unreachable_cluster_is_one_line(
    samples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(samples_dir / "jfk.flac"), "--out", str(tmp_path), "--ray", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err.startswith("fine score: --ray 127.0.0.1:1: cannot reach the Ray head node")
