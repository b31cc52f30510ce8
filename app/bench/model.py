"""``fine bench model``: parameter counts and CPU forward latency (p50, p95) of FINE at MOSI dims, in
torch eager and in onnxruntime (the CPU deployment path, ``docs/ARCHITECTURE.md``), batch 1 and 8.

Batches use the MMSA MOSI feature dims (text 768, audio 5, vision 20) and aligned length 50 by default.
The onnxruntime rows time the same models exported by ``export.onnx_export`` (the graph ``fine export``
writes), fed the same shapes. Text encoder excluded by default (pre-computed embeddings); with
``--text-encoder`` the text branch runs the packaged MiniLM on token ids (the encoder's cost included).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.batch import ModalityBatch
from core.clihelp import command_parser
from core.config import MODALITIES, FineConfig, TextEncoderConfig
from core.model import FINE


def make_batch(cfg: FineConfig, batch: int, lengths: dict[str, int], token_ids: bool) -> ModalityBatch:
    g = torch.Generator().manual_seed(0)
    feats, masks = {}, {}
    for m in MODALITIES:
        t = lengths[m]
        if m == "text" and token_ids:
            feats[m] = torch.randint(1000, 5000, (batch, t), generator=g)
        else:
            feats[m] = torch.randn(batch, t, cfg.input_dims[m], generator=g)
        masks[m] = torch.ones(batch, t, dtype=torch.bool)
    return ModalityBatch(feats, masks, torch.ones(batch, 3, dtype=torch.bool))


@torch.inference_mode()
def time_forward(model: torch.nn.Module, batch: ModalityBatch, warmup: int, reps: int) -> dict[str, float]:
    """Forward latency in eager inference, prepared as the runners prepare a model."""
    if isinstance(model, FINE):
        model.prepare_inference()
    for _ in range(warmup):
        model(batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "mean_ms": statistics.fmean(times),
    }


def bench_models(args: argparse.Namespace) -> list[tuple[bool, FINE]]:
    """``(text encoder in graph, model)`` pairs to time: the ``--model`` artifact, or fresh docs/METHOD.md
    defaults (and, with ``--text-encoder``, the same with the packaged MiniLM in the graph)."""
    from core.artifact import build_model, load_model

    if args.model:
        model = load_model(args.model).eval()
        return [(model.config.text_encoder.source is not None, model)]
    out = []
    for with_encoder in [False, True] if args.text_encoder else [False]:
        cfg = FineConfig()
        if with_encoder:
            cfg = FineConfig(
                input_dims={"text": 384, "audio": 5, "vision": 20},
                text_encoder=TextEncoderConfig(source="packaged:minilm"),
            )
        torch.manual_seed(0)
        out.append((with_encoder, build_model(cfg).eval()))
    return out


def lengths_of(args: argparse.Namespace) -> dict[str, int]:
    return {"text": args.text_len, "audio": args.audio_len, "vision": args.vision_len}


def row(model: FINE, with_encoder: bool, b: int, args: argparse.Namespace, backend: str, stats: dict) -> dict:
    return {
        "backend": backend,
        "text_encoder": "MiniLM-L6 (in graph)" if with_encoder else "excluded",
        "batch": b,
        "params_total": model.num_parameters(),
        "params_without_text_encoder": model.num_parameters(include_text_encoder=False),
        "threads": args.threads,
        "lengths": lengths_of(args),
        **{k: round(v, 3) for k, v in stats.items()},
    }


def run(args: argparse.Namespace, models: list[tuple[bool, FINE]] | None = None) -> list[dict[str, Any]]:
    """Torch eager rows: one per (model, batch size)."""
    torch.set_num_threads(args.threads)
    rows = []
    for with_encoder, model in models if models is not None else bench_models(args):
        for b in args.batch:
            batch = make_batch(model.config, b, lengths_of(args), token_ids=with_encoder)
            rows.append(
                row(model, with_encoder, b, args, "torch", time_forward(model, batch, args.warmup, args.reps))
            )
    return rows


TARGET_BATCH, TARGET_MS = 8, 15.0  # issue: batch 8 <= 15 ms on 2 cores, text encoder excluded


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"FINE forward latency on CPU ({args.threads} threads), lengths {lengths_of(args)}")
    print(
        f"{'backend':<13}{'text encoder':<22}{'batch':>6}{'params (no enc)':>17}{'params (all)':>14}"
        f"{'p50 ms':>9}{'p95 ms':>9}"
    )
    for r in rows:
        print(
            f"{r['backend']:<13}{r['text_encoder']:<22}{r['batch']:>6}{r['params_without_text_encoder']:>17,}"
            f"{r['params_total']:>14,}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
        )
    for r in rows:
        if r["batch"] == TARGET_BATCH and r["text_encoder"] == "excluded":
            verdict = "met" if r["p50_ms"] <= TARGET_MS else "missed"
            print(
                f"target batch {TARGET_BATCH} <= {TARGET_MS:g} ms ({r['backend']}): p50 {r['p50_ms']:.2f} ms, {verdict}"
            )


def parser() -> argparse.ArgumentParser:
    p = command_parser("fine bench model", __doc__, "fine bench model", "fine bench model --text-encoder")
    p.add_argument("--model", help="a model directory (default: a fresh FINE with docs/METHOD.md defaults)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--text-len", type=int, default=50)
    p.add_argument("--audio-len", type=int, default=50)
    p.add_argument("--vision-len", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--reps", type=int, default=200, help="timed calls per row (p50 over them; default 200)")
    p.add_argument(
        "--text-encoder", action="store_true", help="also time with the packaged MiniLM in the graph"
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    return p


def onnxruntime_rows(args: argparse.Namespace, models: list[tuple[bool, Any]]) -> list[dict[str, Any]]:
    from app.bench.runtime import time_call
    from export.io import example_feeds
    from export.onnx_export import ExportOptions, export_onnx, vocab_size
    from export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (with_encoder, model) in enumerate(models):
            path = export_onnx(model, Path(tmp) / f"m{i}.onnx", ExportOptions()).path
            with OnnxRuntimeRunner(path, "cpu", threads=args.threads) as runner:
                for b in args.batch:
                    feeds = example_feeds(
                        model.config,
                        "ids" if with_encoder else "embeddings",
                        b,
                        lengths_of(args),
                        vocab_size=vocab_size(model),
                        seed=b,
                    )
                    feeds = {k: np.ones_like(v) if k.endswith("_mask") else v for k, v in feeds.items()}
                    wall, _ = time_call(functools.partial(runner.run_feeds, feeds), args.reps, args.warmup)
                    ms = sorted(x * 1e3 for x in wall)
                    stats = {
                        "p50_ms": statistics.median(ms),
                        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
                        "mean_ms": statistics.fmean(ms),
                    }
                    rows.append(row(model, with_encoder, b, args, "onnxruntime", stats))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser()
    p.add_argument(
        "--backends",
        default="torch,onnxruntime",
        help="comma list of torch, onnxruntime (default both; onnxruntime needs the export extra)",
    )
    args = p.parse_args(argv)
    wanted = {b.strip() for b in args.backends.split(",") if b.strip()}
    unknown = wanted - {"torch", "onnxruntime"}
    if unknown or not wanted:
        print(
            f"fine bench model: --backends {args.backends!r}: use torch and/or onnxruntime", file=sys.stderr
        )
        return 2
    try:
        models = bench_models(args)
        rows = run(args, models) if "torch" in wanted else []
        if "onnxruntime" in wanted:
            rows += onnxruntime_rows(args, models)
    except Exception as exc:  # a benchmark prints one line, never a traceback
        print(f"fine bench model: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
