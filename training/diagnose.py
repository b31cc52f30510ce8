"""``fine diagnose MODEL [--probe DATA]``: does each branch (words, voice, face) still say something?

A branch can collapse in training (e.g. strong MI terms drove the voice branch to a constant once, see
``training.default_model.RECIPE``): the model then scores every voice the same, and the overall metrics
hide it when the other modalities carry the labels. Per modality over a probe set this reports:

- **unimodal spread**: the std of the score with only that modality present (the others marked absent).
  A collapsed branch gives (nearly) the same score for every input. It is *collapsed* when this std is
  below ``min_spread`` × the label scale's half-range (3 on the MOSI scale).
- **sensitivity**: mean |score(all present) − score(that modality absent)| over the probe rows that
  carry it: how much the multimodal score moves with the modality.

The default probe is built from the model itself, so it needs no data: per modality, feature rows at the
scale of the model's fitted input standardisation (``in_mean``/``in_std``, the training data's per-feature
mean and std), as long as a few seconds at the feature profile's frame rate (text: 8-40 tokens). Each
sample draws its own offset (so samples differ as utterances do) plus per-frame noise. These are not
real voices or faces; they cover the range of the training features, which is what a constant branch
cannot respond to. ``--probe SCHEME:ARG`` uses real data instead (raw text through the model's encoder,
as ``fine evaluate`` does).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.clihelp import add_examples, add_threads, cli_main
from core.config import MODALITIES
from core.errors import FineError, check
from training.data import Dataset, Sample, batch_order, collate

log = logging.getLogger(__name__)

NAMES = {"text": "words", "audio": "voice", "vision": "face"}


@dataclass(frozen=True)
class DiagnoseConfig:
    min_spread: float = 0.02  # collapsed: unimodal std < min_spread * label half-range
    probe_size: int = 128  # samples of the synthetic probe
    seconds: tuple[float, float] = (1.5, 6.0)  # synthetic utterance lengths (audio, vision)
    tokens: tuple[int, int] = (8, 40)  # synthetic transcript lengths (text)
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        check(0.0 < self.min_spread < 1.0, f"min_spread must be in (0, 1), got {self.min_spread}")
        check(self.probe_size >= 8, f"probe_size must be >= 8, got {self.probe_size}")
        check(0.0 < self.seconds[0] <= self.seconds[1], f"seconds must be 0 < lo <= hi, got {self.seconds}")
        check(2 <= self.tokens[0] <= self.tokens[1], f"tokens must be 2 <= lo <= hi, got {self.tokens}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class BranchStats:
    modality: str
    rows: int  # probe rows that carry the modality
    unimodal_mean: float  # score with only this modality present
    unimodal_std: float
    sensitivity: float  # mean |score(all) - score(without it)|
    collapsed: bool


@dataclass(frozen=True)
class Diagnosis:
    branches: dict[str, BranchStats]
    threshold: float  # the unimodal std below which a branch is collapsed
    probe: str
    n: int

    @property
    def collapsed(self) -> list[str]:
        return [m for m, b in self.branches.items() if b.collapsed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "n": self.n,
            "threshold": self.threshold,
            "collapsed": self.collapsed,
            "branches": {m: asdict(b) for m, b in self.branches.items()},
        }

    def format(self) -> str:
        lines = [f"probe: {self.probe} (n={self.n}); collapsed when unimodal std < {self.threshold:.3f}"]
        for m, b in self.branches.items():
            name = f"{m} ({NAMES[m]})"
            if not b.rows:
                lines.append(f"  {name:16s} not in the probe")
                continue
            flag = "COLLAPSED" if b.collapsed else "ok"
            lines.append(
                f"  {name:16s} unimodal std {b.unimodal_std:.4f} (mean {b.unimodal_mean:+.3f})  "
                f"sensitivity {b.sensitivity:.4f}  rows {b.rows}  {flag}"
            )
        return "\n".join(lines)


def branches_of(model: nn.Module) -> tuple[str, ...]:
    """The modalities a model was trained on: those in its feature profile, else all three."""
    profile = getattr(model.config, "feature_profile", None)
    if not profile:
        return MODALITIES
    return tuple(m for m in MODALITIES if profile.get(m) is not None)


def synthetic_probe(model: nn.Module, cfg: DiagnoseConfig | None = None) -> Dataset:
    """Probe rows at the scale of the model's own training features (see the module doc)."""
    cfg = cfg or DiagnoseConfig()
    encoders = getattr(model, "encoders", None)
    if encoders is None:
        raise FineError("fine diagnose needs a FINE model (with per-modality encoders); MMIM has none")
    rng = np.random.default_rng(cfg.seed)
    profile = getattr(model.config, "feature_profile", None) or {}
    takes_ids = getattr(model, "text_encoder", None) is not None
    vocab = int(model.text_encoder.backbone.config.vocab_size) if takes_ids else 0
    samples = []
    for i in range(cfg.probe_size):
        feats: dict[str, np.ndarray | None] = {}
        for m in MODALITIES:
            if m == "text":
                t = int(rng.integers(cfg.tokens[0], cfg.tokens[1] + 1))
            else:
                rate = float((profile.get(m) or {}).get("frame_rate") or 10.0)
                t = max(2, round(rng.uniform(*cfg.seconds) * rate))
            if m == "text" and takes_ids:
                feats[m] = rng.integers(min(1000, vocab - 1), vocab, size=t).astype(np.int64)
                continue
            mean = encoders[m].in_mean.detach().cpu().numpy().astype(np.float64)
            std = encoders[m].in_std.detach().cpu().numpy().astype(np.float64)
            offset = rng.normal(size=mean.shape)
            noise = rng.normal(size=(t, mean.shape[0]))
            feats[m] = (mean + std * np.sqrt(0.5) * (offset + noise)).astype(np.float32)
        samples.append(Sample(f"probe-{i}", feats, 0.0))
    return Dataset("probe", samples, dict(model.config.input_dims), tuple(model.config.label_range))


@torch.no_grad()
def _scores(model: nn.Module, probe: Dataset, keep: torch.Tensor | None, batch_size: int) -> np.ndarray:
    """Scores with the presence flags ANDed with ``keep`` (3,) (``None``: as the data has them)."""
    out = np.zeros(len(probe), dtype=np.float64)
    for idx in batch_order(probe, batch_size, False, bucket=True):
        batch = collate([probe.samples[i] for i in idx], probe.feature_dims)
        if keep is not None:
            batch = batch.with_presence(batch.presence & keep[None, :])
        out[idx] = model(batch).score.float().cpu().numpy()
    return out


def diagnose(
    model: nn.Module,
    probe: Dataset | None = None,
    cfg: DiagnoseConfig | None = None,
    modalities: tuple[str, ...] | None = None,
    probe_name: str = "synthetic rows at the model's input scale",
) -> Diagnosis:
    """Unimodal spread and sensitivity of each branch of ``model`` over ``probe`` (default: the synthetic
    probe); ``modalities`` defaults to :func:`branches_of`."""
    cfg = cfg or DiagnoseConfig()
    model.eval()
    probe = probe if probe is not None else synthetic_probe(model, cfg)
    lo, hi = (float(x) for x in model.config.label_range)
    threshold = cfg.min_spread * (hi - lo) / 2.0
    full = _scores(model, probe, None, cfg.batch_size)
    branches = {}
    for i, m in enumerate(modalities or branches_of(model)):
        has = np.array([s.features.get(m) is not None for s in probe.samples])
        if not has.any():
            branches[m] = BranchStats(m, 0, float("nan"), float("nan"), float("nan"), False)
            continue
        only = torch.tensor([j == i for j in range(len(MODALITIES))])
        uni = _scores(model, probe, only, cfg.batch_size)[has]
        without = _scores(model, probe, ~only, cfg.batch_size)[has]
        std = float(uni.std())
        branches[m] = BranchStats(
            modality=m,
            rows=int(has.sum()),
            unimodal_mean=float(uni.mean()),
            unimodal_std=std,
            sensitivity=float(np.mean(np.abs(full[has] - without))),
            collapsed=std < threshold,
        )
    return Diagnosis(branches, threshold, probe_name, len(probe))


def require_working_branches(model: nn.Module, what: str, cfg: DiagnoseConfig | None = None) -> Diagnosis:
    """:func:`diagnose` on the synthetic probe; a collapsed branch raises a one-line :class:`FineError`."""
    diag = diagnose(model, cfg=cfg)
    if diag.collapsed:
        parts = [f"{m} ({NAMES[m]}) std {diag.branches[m].unimodal_std:.4f}" for m in diag.collapsed]
        raise FineError(
            f"{what}: collapsed branch: {', '.join(parts)} < {diag.threshold:.3f} (the score no longer "
            "depends on that modality); change the recipe (e.g. a smaller beta_mi) and retrain"
        )
    return diag


# ---------------------------------------------------------------------------------------------------
# fine diagnose


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fine diagnose",
        description=__doc__,
    )
    p.add_argument("model", type=Path, help="model directory (config.json + model.safetensors)")
    p.add_argument("--probe", help="SCHEME:ARG data to probe with (as for fine evaluate); default: synthetic")
    p.add_argument("--split", default="valid", help="split of --probe (default valid)")
    p.add_argument("--min-spread", type=float, default=DiagnoseConfig.min_spread, help="collapse threshold")
    p.add_argument("--probe-size", type=int, default=DiagnoseConfig.probe_size, help="synthetic probe size")
    p.add_argument("--seed", type=int, default=DiagnoseConfig.seed)
    p.add_argument("--json", type=Path, help="also write the diagnosis as JSON here")
    add_threads(p, "torch CPU threads", default=None)
    p.description = f"{__doc__}\nexit status: 0 all branches work, 1 a branch collapsed, 2 bad input"
    add_examples(
        p,
        "fine diagnose MODEL --probe csv:../shared/data/MOSI/label.csv --split test",
        "fine diagnose app/assets/default_model",
    )
    return p


def _probe_data(args: argparse.Namespace, model: nn.Module) -> Dataset:
    from training.evaluation import load_eval_data

    ns = argparse.Namespace(data=args.probe, modalities=None, batch_size=32, model=args.model)
    return load_eval_data(ns, model, [args.split])[0][args.split]


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine diagnose", parser(), run, argv)


def run(args: argparse.Namespace) -> int:
    """``fine diagnose``'s body: print (and ``--json``: write) the diagnosis; 1 when a branch collapsed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DiagnoseConfig(min_spread=args.min_spread, probe_size=args.probe_size, seed=args.seed)
    from training.registry import load_any_model
    from training.textprep import quiet_transformers

    quiet_transformers()
    model = load_any_model(args.model)
    if getattr(model, "encoders", None) is None:
        raise FineError(f"{args.model}: fine diagnose needs a FINE model; this one has no modality branches")
    probe = _probe_data(args, model) if args.probe else None
    name = f"{args.probe} [{args.split}]" if args.probe else "synthetic rows at the model's input scale"
    diag = diagnose(model, probe, cfg, probe_name=name)
    print(diag.format())
    if args.json:
        from core.artifact import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(diag.to_dict(), indent=2) + "\n").encode())
    return 1 if diag.collapsed else 0
