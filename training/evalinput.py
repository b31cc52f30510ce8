"""What ``fine evaluate`` feeds a model: the data's modalities, in the form the model takes, checked.

Three rules, so that no number is computed on input the model never sees:

- **Text goes through the model's own encoder.** A model with a text encoder in its graph takes token
  ids (``training.textprep.tokenize_splits``). A model that takes pre-computed token embeddings records the
  encoder that made them in its feature profile (``token-embeddings`` with ``options.source``); raw
  transcripts (``csv:``, ``meld:``) are encoded with exactly that encoder, as ``fine score`` does. A model
  that records no text encoder cannot be given raw text: that is an error, never "text absent".
- **A modality in the wrong form or width is an error** naming the sample, what it holds and what the
  model takes (token ids vs embeddings, feature dims, a different extractor profile).
- **Which modalities are used is said out loud.** By default, every modality the data carries; a
  modality asked for with ``--modalities`` that the data lacks is an error.

:func:`constant_baseline` is what a model that ignores its input would score: the train-label mean as a
constant (MAE, Acc-5/7; Corr is 0), and the train majority sign for the Acc-2 / F1 metrics.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.config import MODALITIES, TextEncoderConfig
from core.errors import InputError
from training.data import Dataset, Sample
from training.metrics import metrics_for

log = logging.getLogger(__name__)

TEXT_EMBEDDINGS = "token-embeddings"  # core.features.text.NAME (not imported: it pulls in torch models)


def data_modalities(splits: dict[str, Dataset]) -> tuple[str, ...]:
    """The modalities that at least one sample carries (raw text counts as text)."""
    samples = [s for ds in splits.values() for s in ds.samples]
    return tuple(
        m
        for m in MODALITIES
        if any(s.features.get(m) is not None or (m == "text" and s.text is not None) for s in samples)
    )


def used_modalities(
    splits: dict[str, Dataset], requested: tuple[str, ...] | None, spec: str
) -> tuple[str, ...]:
    """``requested`` (all of which the data must carry), or every modality the data carries."""
    have = data_modalities(splits)
    if requested is not None:
        lacking = [m for m in requested if m not in have]
        if lacking:
            raise InputError(
                f"--data {spec}: has no {', '.join(lacking)} (it carries {', '.join(have) or 'nothing'}); "
                f"drop {', '.join(lacking)} from --modalities or give data that has it"
            )
        return requested
    if not have:
        raise InputError(f"--data {spec}: no sample carries any modality; nothing to evaluate")
    return have


def text_encoder_of(cfg: Any) -> TextEncoderConfig | None:
    """The encoder that made the text embeddings a model takes, from its feature profile (``None`` if it
    records none). Only for models without an encoder in the graph."""
    profile = (getattr(cfg, "feature_profile", None) or {}).get("text")
    if not isinstance(profile, dict) or profile.get("name") != TEXT_EMBEDDINGS:
        return None
    options = profile.get("options") or {}
    source = options.get("source")
    if not isinstance(source, str) or not source:
        return None
    return TextEncoderConfig(source=source, finetune=False, max_length=int(options.get("max_length", 128)))


def embed_raw_text(
    splits: dict[str, Dataset], cfg: Any, spec: str, batch_size: int = 64, model_dir: Path | None = None
) -> int:
    """Give every sample that has a transcript but no text features the token embeddings of the model's
    recorded encoder (in place), with the model's text adapter merged in when its profile records one
    (the file in ``model_dir``); returns how many were encoded."""
    raw = [s for ds in splits.values() for s in ds.samples if s.features.get("text") is None and s.text]
    if not raw:
        return 0
    dim = int(cfg.input_dims["text"])
    enc_cfg = text_encoder_of(cfg)
    if enc_cfg is None:
        raise InputError(
            f"--data {spec}: gives raw text, but the model takes {dim}-d text features and its artifact "
            "records no text encoder to compute them; evaluate it on data with those text features "
            "(e.g. the feature cache it was trained on) or with --modalities audio,vision"
        )
    from core.text_encoder import load_text_encoder, load_tokenizer
    from training.textdata import tokenize
    from training.textprep import cache_text_embeddings

    encoder = load_text_encoder(enc_cfg)
    adapter = ((cfg.feature_profile or {}).get("text") or {}).get("options", {}).get("adapter")
    if adapter:
        from core.text_adapter import ADAPTER_FILE, adapter_digest, merge_adapter

        path = Path(model_dir or ".") / ADAPTER_FILE
        if model_dir is None or not path.is_file():
            raise InputError(
                f"--data {spec}: the model's words use a text adapter, and {path} is missing; pass the "
                "model directory it was built in (with its text_adapter.safetensors)"
            )
        if adapter_digest(path) != adapter:
            raise InputError(
                f"--data {spec}: {path} is not the text adapter the model was trained with (digest "
                f"{adapter_digest(path)}, the model records {adapter}); copy the model directory whole"
            )
        merge_adapter(encoder.backbone, path)
    if encoder.hidden_size != dim:
        raise InputError(
            f"--data {spec}: the model's text encoder {enc_cfg.source} gives {encoder.hidden_size}-d "
            f"embeddings, but the model takes {dim}-d text; the artifact is inconsistent, re-export it"
        )
    # encode on shallow copies (only the raw samples), then hand the embeddings back
    copies = [replace(s, features=dict(s.features)) for s in raw]
    part = {"raw": Dataset("raw", copies, {"text": dim, "audio": 1, "vision": 1})}
    tokenize(part, load_tokenizer(enc_cfg), enc_cfg.max_length, dim)
    cache_text_embeddings(part, encoder, batch_size)
    for s, c in zip(raw, copies, strict=True):
        s.features["text"] = c.features["text"]
    log.info("encoded %d transcripts with the model's text encoder %s", len(raw), enc_cfg.source)
    return len(raw)


def _form_error(spec: str, s: Sample, m: str, x: np.ndarray, want: str) -> InputError:
    what = f"token ids {tuple(x.shape)}" if x.ndim == 1 else f"{x.dtype} features {tuple(x.shape)}"
    return InputError(f"--data {spec}: sample {s.id} has {m} as {what}, but the model takes {want}")


def check_forms(
    splits: dict[str, Dataset], cfg: Any, used: tuple[str, ...], spec: str, takes_ids: bool
) -> None:
    """Every used modality of every sample is in the form and width the model takes."""
    dims = {m: int(d) for m, d in cfg.input_dims.items()}
    model_profile = getattr(cfg, "feature_profile", None) or {}
    for ds in splits.values():
        data_profile = ds.feature_profile or {}
        for m in used:
            want, have = model_profile.get(m), data_profile.get(m)
            if want is not None and have is not None and want != have:
                raise InputError(
                    f"--data {spec}: its {m} features come from {have.get('name')} v{have.get('version')} "
                    f"{have.get('options') or ''}, the model was trained on {want.get('name')} "
                    f"v{want.get('version')} {want.get('options') or ''}; rebuild the features with the "
                    "model's extractors"
                )
        for s in ds.samples:
            for m in used:
                x = s.features.get(m)
                if x is None:
                    continue
                if m == "text" and takes_ids:
                    if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
                        raise _form_error(spec, s, m, x, "token ids (t,) for its text encoder")
                elif x.ndim != 2 or x.shape[1] != dims[m] or not np.issubdtype(x.dtype, np.floating):
                    raise _form_error(spec, s, m, x, f"float features (t, {dims[m]})")


def constant_baseline(
    train_labels: np.ndarray | None, label_range: tuple[float, float], y: np.ndarray
) -> dict[str, Any]:
    """Metrics of an input-blind predictor: the train-label mean as a constant, and for the sign metrics
    (Has0/Non0 Acc-2 and F1) the train majority sign. Without train labels, the scale's midpoint."""
    lo, hi = label_range
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    have_train = train_labels is not None and len(train_labels) > 0
    t = np.asarray(train_labels if have_train else [], dtype=np.float64)
    c = float(t.mean()) if have_train else (lo + hi) / 2.0
    out: dict[str, Any] = dict(metrics_for(label_range, np.full(n, c), y))
    if "Has0_acc_2" in out:  # MOSI-style scale: the sign metrics use the majority sign
        from training.metrics import regression_metrics

        has0 = 1.0 if not have_train or np.mean(t >= 0) >= 0.5 else -1.0
        nz = t[t != 0]
        non0 = 1.0 if not len(nz) or np.mean(nz > 0) >= 0.5 else -1.0
        signs_has0 = regression_metrics(np.full(n, has0), y)
        signs_non0 = regression_metrics(np.full(n, non0), y)
        out.update({k: signs_has0[k] for k in ("Has0_acc_2", "Has0_F1")})
        out.update({k: signs_non0[k] for k in ("Non0_acc_2", "Non0_F1")})
        out["majority_sign_has0"], out["majority_sign_non0"] = int(has0), int(non0)
    out["constant"] = c
    out["from"] = (
        "the train-label mean; Acc-2/F1: the train majority sign"
        if have_train
        else "the label-range midpoint (no train split)"
    )
    return out
