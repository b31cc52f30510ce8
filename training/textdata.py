"""Text-only label CSVs: the MMSA-style MOSI ``label.csv`` and the MELD sentiment CSVs.

These files carry transcripts and labels but no audio or vision features, so every sample has audio and
vision absent (``None``) and the model uses its learned absent tokens for them. Text is kept as a string
(``Sample.text``); :func:`tokenize` turns it into token ids for the model's text encoder.

- ``csv:PATH`` reads an MMSA ``label.csv`` (columns ``video_id, clip_id, text, label, mode``; ``mode`` is
  train / valid / test). Labels must lie in [-3, 3]. Samples are grouped by ``video_id``.
- ``meld:DIR`` reads ``train_sent_emo.csv`` and ``dev_sent_emo.csv``. MELD has a 3-way sentiment label,
  which is mapped to a score: **positive → +1, neutral → 0, negative → −1** (label range [-1, 1]). The
  public dev file is our *test* split; *valid* is every 10th dialogue of the train file (by dialogue id),
  so model selection never looks at the test split.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from training.data import Dataset, Sample

log = logging.getLogger(__name__)

MELD_SENTIMENT = {"positive": 1.0, "neutral": 0.0, "negative": -1.0}
SPLITS = ("train", "valid", "test")
# Text-only data: the audio/vision dims are placeholders (the modalities are always absent).
ABSENT_DIMS = {"audio": 1, "vision": 1}


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise InputError(f"{path}: missing column(s) {missing}; found {columns}")
            return list(reader)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _label(path: Path, row_no: int, value: str, lo: float, hi: float) -> float:
    try:
        y = float(value)
    except ValueError:
        raise InputError(f"{path}: row {row_no}: field 'label' is not a number ({value!r})") from None
    if not math.isfinite(y):
        raise InputError(f"{path}: row {row_no}: field 'label' is {value!r} (NaN/inf)")
    if not lo <= y <= hi:
        raise InputError(f"{path}: row {row_no}: field 'label' = {y} is outside [{lo}, {hi}]")
    return y


def _dataset(name: str, samples: list[Sample], label_range: tuple[float, float]) -> Dataset:
    return Dataset(name, samples, {"text": 1, **ABSENT_DIMS}, label_range)


def _text_sample(sid: str, text: str, label: float, group: str, **meta: Any) -> Sample:
    feats: dict[str, np.ndarray | None] = {"text": None, "audio": None, "vision": None}
    return Sample(id=sid, features=feats, label=label, text=text, group=group, meta=dict(meta))


def load_label_csv(arg: str) -> dict[str, Dataset]:
    """``csv:PATH``: an MMSA-style ``label.csv`` with a ``mode`` column (train / valid / test)."""
    if not arg:
        raise InputError("--data csv:PATH needs the path of a label.csv")
    path = Path(arg).expanduser()
    rows = _read_rows(path, ("video_id", "clip_id", "text", "label", "mode"))
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        mode = row["mode"].strip()
        if mode not in out:
            raise InputError(f"{path}: row {i}: field 'mode' is {mode!r}; expected one of {list(SPLITS)}")
        text = (row["text"] or "").strip()
        if not text:
            raise InputError(f"{path}: row {i}: field 'text' is empty")
        y = _label(path, i, row["label"], -3.0, 3.0)
        sid = f"{row['video_id']}${row['clip_id']}"
        out[mode].append(_text_sample(sid, text, y, row["video_id"]))
    if not out["train"]:
        raise InputError(f"{path}: no row has mode 'train'")
    log.info("%s: %s", path, ", ".join(f"{k} {len(v)}" for k, v in out.items()))
    return {k: _dataset(k, v, (-3.0, 3.0)) for k, v in out.items()}


def _meld_file(path: Path, name: str) -> list[Sample]:
    rows = _read_rows(path, ("Utterance", "Sentiment", "Dialogue_ID", "Utterance_ID"))
    samples = []
    for i, row in enumerate(rows, start=2):
        sentiment = row["Sentiment"].strip().lower()
        if sentiment not in MELD_SENTIMENT:
            raise InputError(
                f"{path}: row {i}: field 'Sentiment' is {row['Sentiment']!r}; expected one of "
                f"{sorted(MELD_SENTIMENT)}"
            )
        text = (row["Utterance"] or "").replace("\x92", "'").strip()
        if not text:
            raise InputError(f"{path}: row {i}: field 'Utterance' is empty")
        dia = row["Dialogue_ID"].strip()
        samples.append(
            _text_sample(
                f"{name}:dia{dia}_utt{row['Utterance_ID'].strip()}",
                text,
                MELD_SENTIMENT[sentiment],
                f"{name}:dia{dia}",
                emotion=row.get("Emotion", ""),
            )
        )
    return samples


def load_meld(arg: str) -> dict[str, Dataset]:
    """``meld:DIR``: MELD sentiment (positive/neutral/negative → +1/0/−1, range [-1, 1])."""
    if not arg:
        raise InputError("--data meld:DIR needs the folder with train_sent_emo.csv and dev_sent_emo.csv")
    root = Path(arg).expanduser()
    train_path, dev_path = root / "train_sent_emo.csv", root / "dev_sent_emo.csv"
    for p in (train_path, dev_path):
        if not p.exists():
            raise InputError(f"{p}: not found; --data meld:DIR needs train_sent_emo.csv and dev_sent_emo.csv")
    train_all = _meld_file(train_path, "train")
    valid = [s for s in train_all if int(s.group.split("dia")[1]) % 10 == 9]  # type: ignore[union-attr]
    train = [s for s in train_all if int(s.group.split("dia")[1]) % 10 != 9]  # type: ignore[union-attr]
    test = _meld_file(dev_path, "dev")
    log.info(
        "MELD sentiment mapped positive/neutral/negative -> +1/0/-1; train %d, valid %d (every 10th "
        "train dialogue), test %d (the public dev file)",
        len(train),
        len(valid),
        len(test),
    )
    return {
        "train": _dataset("train", train, (-1.0, 1.0)),
        "valid": _dataset("valid", valid, (-1.0, 1.0)),
        "test": _dataset("test", test, (-1.0, 1.0)),
    }


def tokenize(splits: dict[str, Dataset], tokenizer: Any, max_length: int, hidden_size: int) -> None:
    """Fill ``features['text']`` with int64 token ids ``(t,)`` from ``Sample.text`` (in place).

    Samples whose text is ``None`` keep their text feature as it is. ``feature_dims['text']`` becomes
    the encoder's hidden size, since that is what the model's text branch sees."""
    for ds in splits.values():
        todo = [s for s in ds.samples if s.text is not None]
        for start in range(0, len(todo), 256):
            chunk = todo[start : start + 256]
            enc = tokenizer(
                [s.text for s in chunk], truncation=True, max_length=max_length, add_special_tokens=True
            )
            for s, ids in zip(chunk, enc["input_ids"]):
                s.features["text"] = np.asarray(ids, dtype=np.int64)
        ds.feature_dims = {**ds.feature_dims, "text": hidden_size}
