"""Dataset registry: ``--data SCHEME:ARG`` on the command line -> ``{"train": Dataset, "valid": ..., "test": ...}``.

Loaders register themselves here by scheme (``synthetic``, ``cache``, ``mmsa``, ``misa``, ``csv`` ...).
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import InputError
from training.data import Dataset

Loader = Callable[[str], dict[str, Dataset]]
_LOADERS: dict[str, tuple[str, str]] = {
    # scheme -> ("module:function", help). Imported lazily.
    "synthetic": (
        "training.synthetic:load_synthetic",
        "generated planted-signal data; ARG: n_train (default 1200)",
    ),
    "cache": (
        "training.featcache:load_cache",
        "feature cache built by 'fine features build'; ARG: a directory",
    ),
    "csv": ("training.textdata:load_label_csv", "MMSA label.csv, text only; ARG: path"),
    "meld": ("training.textdata:load_meld", "MELD sentiment CSVs (pos/neu/neg -> +1/0/-1); ARG: folder"),
    "mmsa": ("training.benchmarks:load_mmsa", "MMSA feature pickle (aligned_50.pkl ...); ARG: path"),
    "misa": ("training.benchmarks:load_misa", "MISA/MMIM list pickle(s); ARG: .pkl or folder"),
    "live": (
        "training.corpus:load_live",
        "the default model's corpus (MOSI text, EmoDB/PAA voice, GRID faces) with live features; ARG: shared/data",
    ),
}


def register(scheme: str, target: str, help_: str) -> None:
    _LOADERS[scheme] = (target, help_)


def schemes() -> dict[str, str]:
    return {k: v[1] for k, v in _LOADERS.items()}


def load(spec: str) -> dict[str, Dataset]:
    """Load ``SCHEME:ARG`` (or bare ``SCHEME``) into named splits."""
    import importlib

    scheme, _, arg = spec.partition(":")
    if scheme not in _LOADERS:
        raise InputError(
            f"--data {spec!r}: unknown data scheme {scheme!r}; use one of "
            + ", ".join(f"{k}:ARG" for k in sorted(_LOADERS))
        )
    module, func = _LOADERS[scheme][0].split(":")
    loader: Loader = getattr(importlib.import_module(module), func)
    return loader(arg)
