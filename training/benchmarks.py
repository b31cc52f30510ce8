"""Benchmark feature pickles: MMSA (``aligned_50.pkl`` ...) and MISA/MMIM lists (``dev.pkl`` ...).

Both are read with the restricted unpickler (:mod:`training.safe_pickle`). Dims come from the data.
Bad data stops with one line naming the file and the field: a missing key, ragged lengths, a label
outside [-3, 3] or NaN/inf in a label. NaN/inf *inside features* is replaced by 0 as MMSA does
(``audio[audio == -inf] = 0``, ``x[x != x] = 0``), and how many values were replaced is logged.

- ``mmsa:FILE.pkl``: a dict ``{"train", "valid", "test"}`` of dicts with ``audio (n, t, d_a)``,
  ``vision (n, t, d_v)``, ``text (n, t, 768)`` BERT embeddings, ``text_bert (n, 3, t)`` ids/mask/segments,
  ``regression_labels (n,)``, optional ``audio_lengths``/``vision_lengths`` (unaligned files), ``raw_text``
  and ``id``. The text mask is ``text_bert[:, 1]``. ``Sample.text`` keeps ``raw_text`` so a run with a
  transformer text encoder re-tokenizes it (:func:`training.textdata.tokenize`).
- ``misa:PATH``: a list of ``((words, visual, acoustic, actual_words), label, segment_id)``; PATH is one
  ``.pkl`` (split named by its stem: train, dev→valid, test) or a folder holding ``train.pkl``,
  ``dev.pkl`` and/or ``test.pkl``. Features are word-aligned (one row per word); the text is the words,
  kept in ``Sample.text`` for the text encoder. Samples are grouped by video (the id before ``[``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from training.data import Dataset, Sample
from training.safe_pickle import load_pickle

log = logging.getLogger(__name__)

LABEL_RANGE = (-3.0, 3.0)
MMSA_SPLITS = ("train", "valid", "test")
MISA_FILES = {"train": "train", "dev": "valid", "valid": "valid", "test": "test"}


def clean_features(x: Any, where: str) -> tuple[np.ndarray, int]:
    """float32 copy of ``x`` with NaN/±inf set to 0 (MMSA's cleaning) and the count replaced."""
    try:
        arr = np.array(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a numeric array") from None
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if n:
        arr[bad] = 0.0
    return arr, n


def check_label(y: Any, where: str) -> float:
    try:
        value = float(np.asarray(y, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise InputError(f"{where}: label is not a number ({y!r})") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: label is {value} (NaN/inf)")
    lo, hi = LABEL_RANGE
    if not lo <= value <= hi:
        raise InputError(f"{where}: label {value} is outside [{lo}, {hi}]")
    return value


def _log_cleaned(path: Path, counts: dict[str, int]) -> None:
    for field, n in counts.items():
        if n:
            log.warning("%s: replaced %d NaN/inf values in '%s' with 0 (as MMSA does)", path, n, field)


# ---------------------------------------------------------------------------------------------------
# MMSA


def _mmsa_split(path: Path, split: str, d: Any) -> tuple[list[Sample], dict[str, int], dict[str, int]]:
    where = f"{path}: {split}"
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a dict of arrays, got {type(d).__name__}")
    for key in ("audio", "vision", "regression_labels"):
        if key not in d:
            raise InputError(f"{where}: missing key '{key}' (found {sorted(d)})")
    if "text" not in d and "raw_text" not in d:
        raise InputError(f"{where}: missing key 'text' (and no 'raw_text')")
    n = len(d["regression_labels"])
    for key in ("audio", "vision", "text", "text_bert", "raw_text", "id", "audio_lengths", "vision_lengths"):
        if key in d and len(d[key]) != n:
            raise InputError(f"{where}: field '{key}' has {len(d[key])} rows but regression_labels has {n}")
    counts = {"audio": 0, "vision": 0, "text": 0}
    arrays = {}
    for key in ("audio", "vision", "text"):
        if key not in d:
            continue
        arrays[key], counts[key] = clean_features(d[key], f"{where}: field '{key}'")
        if arrays[key].ndim != 3:
            raise InputError(f"{where}: field '{key}' must be (n, t, d), got shape {arrays[key].shape}")
    text_mask = None
    if "text_bert" in d:
        tb = np.asarray(d["text_bert"])
        if tb.ndim != 3 or tb.shape[1] != 3:
            raise InputError(f"{where}: field 'text_bert' must be (n, 3, t), got shape {tb.shape}")
        text_mask = tb[:, 1].astype(bool)
    samples = []
    for i in range(n):
        sid = str(d["id"][i]) if "id" in d else f"{split}-{i}"
        feats: dict[str, np.ndarray | None] = {}
        for m, key in (("audio", "audio_lengths"), ("vision", "vision_lengths")):
            x = arrays[m][i]
            length = int(d[key][i]) if key in d else x.shape[0]
            if not 0 <= length <= x.shape[0]:
                raise InputError(f"{where}: field '{key}' row {i} is {length}, outside 0..{x.shape[0]}")
            feats[m] = x[:length] if length > 0 else None
        if "text" in arrays:
            t = int(text_mask[i].sum()) if text_mask is not None else arrays["text"].shape[1]
            feats["text"] = arrays["text"][i][:t] if t > 0 else None
        else:
            feats["text"] = None
        y = check_label(d["regression_labels"][i], f"{where}: field 'regression_labels' row {i}")
        raw = str(d["raw_text"][i]) if "raw_text" in d else None
        group = sid.split("$_$")[0] if "$_$" in sid else sid.rsplit("_", 1)[0]
        samples.append(Sample(id=sid, features=feats, label=y, text=raw, group=group))
    dims = {m: int(arrays[m].shape[2]) if m in arrays else 1 for m in ("text", "audio", "vision")}
    return samples, dims, counts


def load_mmsa(arg: str) -> dict[str, Dataset]:
    """``mmsa:FILE.pkl``: an MMSA feature pickle (aligned_50 / unaligned_50 / unaligned_39)."""
    if not arg:
        raise InputError("--data mmsa:FILE needs the path of an MMSA .pkl (e.g. aligned_50.pkl)")
    path = Path(arg).expanduser()
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict with train/valid/test, got {type(data).__name__}")
    missing = [s for s in MMSA_SPLITS if s not in data]
    if missing:
        raise InputError(f"{path}: missing split key(s) {missing} (found {sorted(data)})")
    out: dict[str, Dataset] = {}
    dims0: dict[str, int] | None = None
    total = {"audio": 0, "vision": 0, "text": 0}
    for split in MMSA_SPLITS:
        samples, dims, counts = _mmsa_split(path, split, data[split])
        if dims0 is not None and dims != dims0:
            raise InputError(f"{path}: {split} has feature dims {dims}, but train has {dims0}")
        dims0 = dims
        total = {k: total[k] + counts[k] for k in total}
        out[split] = Dataset(split, samples, dims, LABEL_RANGE)
    _log_cleaned(path, total)
    return out


# ---------------------------------------------------------------------------------------------------
# MISA / MMIM lists


def _misa_file(path: Path, split: str) -> tuple[list[Sample], dict[str, int]]:
    data = load_pickle(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of ((words, visual, acoustic, actual_words), label, id)")
    samples, dims = [], {}
    counts = {"audio": 0, "vision": 0}
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if not (isinstance(item, tuple | list) and len(item) == 3 and len(item[0]) == 4):
            raise InputError(
                f"{where}: expected ((words, visual, acoustic, actual_words), label, segment_id)"
            )
        (_, visual, acoustic, words), label, sid = item
        v, nv = clean_features(visual, f"{where}: field 'visual'")
        a, na = clean_features(acoustic, f"{where}: field 'acoustic'")
        counts["vision"] += nv
        counts["audio"] += na
        for name, x in (("visual", v), ("acoustic", a)):
            if x.ndim != 2:
                raise InputError(f"{where}: field '{name}' must be (words, d), got shape {x.shape}")
        if not (len(words) == v.shape[0] == a.shape[0]):
            raise InputError(
                f"{where}: field lengths are ragged: {len(words)} words, visual {v.shape[0]} rows, "
                f"acoustic {a.shape[0]} rows"
            )
        for m, x in (("vision", v), ("audio", a)):
            if dims.setdefault(m, x.shape[1]) != x.shape[1]:
                raise InputError(f"{where}: field '{m}' has width {x.shape[1]}, earlier items {dims[m]}")
        y = check_label(label, f"{where}: field 'label'")
        sid = str(sid)
        text = " ".join(str(w) for w in words)
        feats: dict[str, np.ndarray | None] = {
            "text": None,
            "audio": a if len(a) else None,
            "vision": v if len(v) else None,
        }
        samples.append(Sample(id=sid, features=feats, label=y, text=text, group=sid.split("[")[0]))
    _log_cleaned(path, counts)
    return samples, {"text": 1, **dims}


def load_misa(arg: str) -> dict[str, Dataset]:
    """``misa:PATH``: MISA/MMIM list pickles (a file, or a folder with train/dev/test.pkl)."""
    if not arg:
        raise InputError("--data misa:PATH needs a .pkl file or a folder with train.pkl/dev.pkl/test.pkl")
    path = Path(arg).expanduser()
    if path.is_dir():
        files = {MISA_FILES[p.stem]: p for p in sorted(path.glob("*.pkl")) if p.stem in MISA_FILES}
        if not files:
            raise InputError(f"{path}: no train.pkl, dev.pkl or test.pkl in this folder")
    else:
        split = MISA_FILES.get(path.stem.split("_")[-1], "train")
        files = {split: path}
    out: dict[str, Dataset] = {}
    dims0: dict[str, int] | None = None
    for split, p in files.items():
        samples, dims = _misa_file(p, split)
        if dims0 is not None and dims != dims0:
            raise InputError(f"{p}: feature dims {dims} differ from the other files' {dims0}")
        dims0 = dims
        out[split] = Dataset(split, samples, dims, LABEL_RANGE)
    log.info("%s: %s", path, ", ".join(f"{k} {len(v)}" for k, v in out.items()))
    return out
