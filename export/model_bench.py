"""``fine bench model``: parameter counts and CPU forward latency (p50, p95) of FINE at MOSI dims, in
torch eager and in onnxruntime (the CPU deployment path, ``docs/ARCHITECTURE.md``), batch 1 and 8.

The torch rows come from ``core.bench``; the onnxruntime rows time the same models exported by
``export.onnx_export`` (the graph ``fine export`` writes), fed the same shapes. Text encoder excluded by
default (pre-computed embeddings); ``--text-encoder`` adds the packaged MiniLM in the graph.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core import bench


def onnxruntime_rows(args: argparse.Namespace, models: list[tuple[bool, Any]]) -> list[dict[str, Any]]:
    from export.bench import time_call
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
                        bench.lengths_of(args),
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
                    rows.append(bench.row(model, with_encoder, b, args, "onnxruntime", stats))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = bench.parser()
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
        models = bench.bench_models(args)
        rows = bench.run(args, models) if "torch" in wanted else []
        if "onnxruntime" in wanted:
            rows += onnxruntime_rows(args, models)
    except Exception as exc:  # a benchmark prints one line, never a traceback
        print(f"fine bench model: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        bench.print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
