"""``fine bench runtime``: latency (p50/p95) and throughput of every available backend.

Benchmarks the raw graph call (``score, unimodal``) at each batch size, and optionally the Shapley call
(``--contributions``: the 8 presence subsets as one ``8·b`` batch). Without MODEL it uses a randomly
initialised FINE with the default config (MOSI dims 768/5/20); "with text encoder" puts the packaged
MiniLM inside the graph (token ids in). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.clihelp import cli_main, command_parser
from core.config import MODALITIES, FineConfig, TextEncoderConfig

log = logging.getLogger(__name__)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine bench runtime",
        __doc__.splitlines()[0],
        "fine bench runtime",
        "fine bench runtime runs/mosi/best --contributions",
    )
    p.add_argument("model", nargs="?", help="model artifact (default: random FINE, default config)")
    p.add_argument("--batch", type=_ints, default=[1, 8], help="batch sizes (default 1,8)")
    p.add_argument("--length", type=int, default=50, help="sequence length of every modality (default 50)")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime")
    p.add_argument("--backends", default="all", help="comma list (torch, onnxruntime-cpu, ...) or all")
    p.add_argument("--text-encoder", choices=["both", "with", "without"], default="both")
    p.add_argument("--encoder-source", default="packaged:minilm", help="text encoder for the 'with' runs")
    p.add_argument("--contributions", action="store_true", help="also time the Shapley (8·b) call")
    return p


def time_call(fn: Callable[[], Any], iters: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each call. On a busy machine wall time inflates with the
    other load while CPU time (all threads of this process) does not: with one thread it is a fair
    estimate of the unloaded latency."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(iters):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _models(args: argparse.Namespace) -> list[tuple[str, Any]]:
    import torch

    from core.artifact import build_model, load_model

    if args.model:
        return [("artifact", load_model(args.model))]
    torch.manual_seed(0)
    out = []
    if args.text_encoder in ("both", "without"):
        out.append(("without", build_model(FineConfig()).eval()))
    if args.text_encoder in ("both", "with"):
        base = FineConfig()
        from core.text_encoder import load_text_encoder

        encoder = load_text_encoder(TextEncoderConfig(source=args.encoder_source))
        cfg = dataclasses.replace(
            base,
            input_dims={**base.input_dims, "text": encoder.hidden_size},
            text_encoder=TextEncoderConfig(source=args.encoder_source),
        )
        from core.model import FINE

        out.append(("with", FINE(cfg, text_encoder=encoder).eval()))
    return out


def _runners(model: Any, onnx_path: Path, wanted: set[str] | None, threads: int | None) -> list[Any]:
    from export.runtime import available_backends
    from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from export.runtime.torch_runner import TorchRunner

    runners: list[Any] = []
    for name in available_backends():
        if wanted is not None and name not in wanted:
            continue
        if name in ("torch", "torch-cuda"):
            runners.append(
                TorchRunner(model, device="cuda" if name == "torch-cuda" else "cpu", threads=threads)
            )
        elif name.startswith("onnxruntime-"):
            runners.append(OnnxRuntimeRunner(onnx_path, name.removeprefix("onnxruntime-"), threads=threads))
        elif name == "tensorrt":
            from export.runtime.tensorrt_runner import TensorRTRunner
            from export.tensorrt_build import build_engine

            runners.append(TensorRTRunner(build_engine(onnx_path)))
    return runners


def run(args: argparse.Namespace) -> int:
    import torch

    from export.io import TextInput, example_feeds
    from export.onnx_export import ExportOptions, export_onnx, vocab_size

    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = None if args.backends == "all" else set(args.backends.split(","))
    print(
        f"fine bench runtime: seq len {args.length}, {args.iters} iters, torch threads {torch.get_num_threads()}"
    )
    header = (
        f"{'backend':<22} {'text enc':<8} {'call':<8} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} {'samples/s':>10}"
        f" {'cpu p50 ms':>10}"
    )
    print(header)
    print("-" * len(header))
    medians: dict[tuple[str, str, str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in _models(args):
            onnx_path = export_onnx(model, Path(tmp) / f"{label}.onnx", ExportOptions()).path
            vocab = vocab_size(model)
            text_input: TextInput = "ids" if model.text_encoder is not None else "embeddings"
            for runner in _runners(model, onnx_path, wanted, args.threads):
                with runner:
                    for b in args.batch:
                        lengths = {m: args.length for m in MODALITIES}
                        feeds = example_feeds(model.config, text_input, b, lengths, vocab_size=vocab, seed=b)
                        feeds = {k: np.ones_like(v) if k.endswith("_mask") else v for k, v in feeds.items()}
                        calls = [("graph", lambda f=feeds, r=runner: r.run_feeds(f))]
                        if args.contributions:
                            calls.append(("shapley", lambda f=feeds, r=runner: r.infer_feeds(f, True)))
                        for call, fn in calls:
                            ts, cpu = time_call(fn, args.iters, args.warmup)
                            p50, p95 = _percentile(ts, 50) * 1e3, _percentile(ts, 95) * 1e3
                            medians[(runner.name, label, call, b)] = p50
                            thr = b / statistics.fmean(ts)
                            cpu50 = _percentile(cpu, 50) * 1e3
                            print(
                                f"{runner.name:<22} {label:<8} {call:<8} {b:>5} {p50:>9.2f} {p95:>9.2f} {thr:>10.1f}"
                                f" {cpu50:>10.2f}"
                            )
                            sys.stdout.flush()
    for (name, label, call, b), p50 in sorted(medians.items()):
        ref = medians.get(("torch-cpu", label, call, b))
        if ref and name != "torch-cpu":
            print(f"speed-up {name} vs torch-cpu ({label} text encoder, {call}, batch {b}): {ref / p50:.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine bench runtime", parser(), run, argv)
