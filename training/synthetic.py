"""Generated data with a planted cross-modal rule, for demos, tests and ablations.

Each sample draws latent values ``a, v ~ U(-1, 1)``. The audio sequence carries ``a`` and the vision
sequence carries ``v`` (a fixed random direction scaled by the latent, on a random subset of frames,
under noise); text is pure noise. The label depends on audio and vision *jointly*:
``y = clip(1.5·a + 1.5·v + 1.5·a·v, -3, 3)``. A model that ignores vision cannot beat a much weaker
baseline, which is what the planted-signal tests check.

``text_signal > 0`` makes the modalities partly redundant (the premise of missing-modality recovery):
the text sequence then also carries ``text_signal · (a·d_ta + v·d_tv)`` on its signal frames, so what a
dropped audio or vision stream held can be partly recovered from text. ``synthetic:N,text_signal=0.5``
selects it on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from training.data import Dataset, Sample


@dataclass(frozen=True)
class SyntheticSpec:
    n: int = 1200
    dims: tuple[int, int, int] = (16, 8, 12)  # text, audio, vision
    min_len: int = 8
    max_len: int = 24
    noise: float = 0.5
    signal_frames: float = 0.5  # fraction of frames that carry the latent
    p_absent: float = 0.0  # probability that each modality is absent (for robustness data)
    text_signal: float = 0.0  # amplitude of the latents in text (0: text is pure noise)
    seed: int = 0


def planted_label(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.clip(1.5 * a + 1.5 * v + 1.5 * a * v, -3.0, 3.0)


def make_planted(spec: SyntheticSpec = SyntheticSpec(), name: str = "planted") -> Dataset:
    rng = np.random.default_rng(spec.seed)
    d_t, d_a, d_v = spec.dims
    # the carrier directions are part of the "world", fixed across splits (seeded independently)
    world = np.random.default_rng(12345)
    dir_a = world.normal(size=d_a).astype(np.float32)
    dir_v = world.normal(size=d_v).astype(np.float32)
    dir_a /= np.linalg.norm(dir_a) / np.sqrt(d_a)
    dir_v /= np.linalg.norm(dir_v) / np.sqrt(d_v)
    dir_ta, dir_tv = (world.normal(size=d_t).astype(np.float32) for _ in range(2))
    dir_ta /= np.linalg.norm(dir_ta) / np.sqrt(d_t)
    dir_tv /= np.linalg.norm(dir_tv) / np.sqrt(d_t)
    samples = []
    for i in range(spec.n):
        a, v = rng.uniform(-1, 1, size=2)

        def seq(dim: int, latent: float | None, direction: np.ndarray | None) -> np.ndarray:
            t = int(rng.integers(spec.min_len, spec.max_len + 1))
            x = rng.normal(scale=spec.noise, size=(t, dim)).astype(np.float32)
            if latent is not None and direction is not None:
                on = rng.random(t) < spec.signal_frames
                on[rng.integers(t)] = True
                x[on] += np.float32(latent) * direction
            return x

        text_dir = np.float32(spec.text_signal) * (np.float32(a) * dir_ta + np.float32(v) * dir_tv)
        feats: dict[str, np.ndarray | None] = {
            "text": seq(d_t, 1.0, text_dir) if spec.text_signal > 0 else seq(d_t, None, None),
            "audio": seq(d_a, a, dir_a),
            "vision": seq(d_v, v, dir_v),
        }
        if spec.p_absent > 0:
            for m in feats:
                if rng.random() < spec.p_absent:
                    feats[m] = None
        y = float(planted_label(np.array(a), np.array(v)))
        samples.append(Sample(id=f"{name}-{i}", features=feats, label=y, meta={"a": float(a), "v": float(v)}))
    return Dataset(name, samples, {"text": d_t, "audio": d_a, "vision": d_v}, (-3.0, 3.0))


def planted_splits(
    n_train: int = 1200, n_valid: int = 300, n_test: int = 300, seed: int = 0, **kw: object
) -> dict[str, Dataset]:
    return {
        split: make_planted(SyntheticSpec(n=n, seed=seed * 10 + k, **kw), name=split)  # type: ignore[arg-type]
        for k, (split, n) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test)))
    }


SPEC_OPTIONS = ("noise", "signal_frames", "p_absent", "text_signal")


def load_synthetic(arg: str) -> dict[str, Dataset]:
    """``--data synthetic[:N_TRAIN[,KEY=VALUE...]]``: planted-signal splits (train N, valid and test N/4
    each); KEY is one of ``SPEC_OPTIONS`` (e.g. ``synthetic:1200,text_signal=0.5``)."""
    head, *opts = arg.split(",") if arg else [""]
    try:
        n = int(head) if head else 1200
        kw = {k.strip(): float(v) for k, v in (o.split("=", 1) for o in opts)}
    except ValueError:
        raise InputError(
            f"--data synthetic:{arg}: expected synthetic:N[,KEY=VALUE...], e.g. synthetic:1200,text_signal=0.5"
        ) from None
    unknown = sorted(set(kw) - set(SPEC_OPTIONS))
    if unknown:
        raise InputError(f"--data synthetic:{arg}: unknown option(s) {unknown}; known: {list(SPEC_OPTIONS)}")
    return planted_splits(n_train=n, n_valid=max(n // 4, 16), n_test=max(n // 4, 16), **kw)
