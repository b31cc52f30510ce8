"""Facial-expression encoder: a small CNN trained on FER-2013 (7 classes + valence + an embedding).

The encoder sees a gray face crop of ``EXPRESSION_SIZE`` pixels framed the way FER-2013 frames its faces
(tight, eyes a little above the middle). Live and offline crops come from FaceMesh landmarks through
:func:`align_face`, whose template was measured on FER-2013 itself, so training and run time see the same
kind of crop (``fine expression train`` reports how well the two paths agree).

Outputs per face (:class:`ExpressionOutput`): class probabilities over :data:`EXPRESSIONS`, a valence in
[-1, 1] from its own head, and a ``embed_dim``-d embedding (the layer both heads read). Weights ship as
safetensors + JSON (``core/features/assets/expression``); ``fine expression train`` rebuilds them.

Class -> valence (the valence head's training target), after the circumplex model of affect (Russell 1980):
happy +1; angry, disgust, fear, sad -1; neutral 0; surprise +0.25. Surprise is ambiguous (pleasant or
startled); FER-2013's surprise faces are mostly open-mouthed astonishment, rated near neutral to slightly
positive in valence norms, so it gets a small positive value instead of a sign it does not have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import from_dict, to_dict
from core.errors import InputError, check

log = logging.getLogger(__name__)

EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VALENCE: dict[str, float] = {
    "angry": -1.0,
    "disgust": -1.0,
    "fear": -1.0,
    "happy": 1.0,
    "sad": -1.0,
    "surprise": 0.25,
    "neutral": 0.0,
}
EXPRESSION_SIZE = 48
ASSET_DIR = Path(__file__).with_name("assets") / "expression"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
FORMAT = "fine-expression-encoder"


@dataclass(frozen=True)
class ExpressionConfig:
    """Encoder shape. width: channels of the first stage (doubled at each of 4 stages)."""

    width: int = 24  # the shipped encoder
    embed_dim: int = 32
    dropout: float = 0.3
    size: int = EXPRESSION_SIZE
    classes: tuple[str, ...] = EXPRESSIONS

    def __post_init__(self) -> None:
        check(4 <= self.width <= 128, f"expression.width must be in [4, 128], got {self.width}")
        check(2 <= self.embed_dim <= 512, f"expression.embed_dim must be in [2, 512], got {self.embed_dim}")
        check(0 <= self.dropout < 1, f"expression.dropout must be in [0, 1), got {self.dropout}")
        check(self.size % 8 == 0 and 24 <= self.size <= 128, f"expression.size: 24..128, /8, got {self.size}")
        check(tuple(self.classes) == EXPRESSIONS, f"expression.classes must be {EXPRESSIONS}")


def _conv(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class ExpressionNet(nn.Module):
    """VGG-style CNN: 4 stages of two 3x3 convs (width, 2w, 4w, 8w), global average pool, a ReLU embedding,
    a 7-class head and a tanh valence head. Input ``(b, 1, size, size)`` uint8-range gray; each image is
    standardised inside (mean 0, std 1), so lighting and camera gain matter less."""

    def __init__(self, config: ExpressionConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        chans = [1, w, 2 * w, 4 * w, 8 * w]
        layers: list[nn.Module] = []
        for s in range(4):
            layers += [_conv(chans[s], chans[s + 1]), _conv(chans[s + 1], chans[s + 1])]
            if s < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(8 * w, config.embed_dim), nn.ReLU())
        self.classify = nn.Linear(config.embed_dim, len(EXPRESSIONS))
        self.valence = nn.Linear(config.embed_dim, 1)

    def forward(self, gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(b, 1, s, s)`` gray in [0, 255] -> logits ``(b, 7)``, valence ``(b,)`` in [-1, 1], embedding."""
        x = gray.float()
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(4.0)  # a flat crop is not blown up into noise
        emb = self.embed(self.features((x - mean) / std))
        return self.classify(emb), torch.tanh(self.valence(emb)).squeeze(-1), emb


@dataclass
class ExpressionOutput:
    """Per face: ``probs (n, 7)``, ``valence (n,)``, ``embedding (n, embed_dim)``; float32 numpy."""

    probs: np.ndarray
    valence: np.ndarray
    embedding: np.ndarray

    def top(self, i: int = 0) -> tuple[str, float]:
        k = int(np.argmax(self.probs[i]))
        return EXPRESSIONS[k], float(self.probs[i, k])

    def features(self) -> np.ndarray:
        """``(n, 8 + embed_dim)``: probabilities, valence, embedding (the vision profile's layout)."""
        return np.concatenate([self.probs, self.valence[:, None], self.embedding], axis=1).astype(np.float32)


class ExpressionEncoder:
    """Runs :class:`ExpressionNet` on aligned gray crops (eval mode, torch on CPU by default). ``backend`` is
    any callable ``crops (n, 1, s, s) float32 -> (logits, valence, embedding)`` numpy arrays: the export
    package's onnxruntime / TensorRT runners plug in there with the same pre- and post-processing."""

    def __init__(
        self, net: ExpressionNet, card: dict[str, Any] | None = None, backend: Any = None, digest: str = ""
    ) -> None:
        self.net = net.eval()
        self.card = card or {}
        self.backend = backend
        self.digest = digest

    @property
    def config(self) -> ExpressionConfig:
        return self.net.config

    @property
    def identity(self) -> str:
        """Name, version and weight digest: what a vision profile records (a retrained encoder differs)."""
        return f"{self.card.get('name', 'expression')} v{self.card.get('version', '0')} {self.digest}"

    def __call__(self, crops: np.ndarray) -> ExpressionOutput:
        """``(n, s, s)`` uint8 (or float) gray crops -> :class:`ExpressionOutput`."""
        x = np.asarray(crops, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        x = x[:, None]
        if self.backend is not None:
            logits, valence, emb = (np.asarray(a, dtype=np.float32) for a in self.backend(x))
        else:
            with torch.inference_mode():
                out = self.net(torch.from_numpy(x))
            logits, valence, emb = (t.numpy() for t in out)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return ExpressionOutput(p.astype(np.float32), valence.reshape(-1).astype(np.float32), emb)


def save_encoder(net: ExpressionNet, directory: str | os.PathLike[str], card: dict[str, Any]) -> None:
    from core.artifact import atomic_write_bytes, save_tensors

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / WEIGHTS, {k: v.detach().contiguous() for k, v in net.state_dict().items()})
    meta = {"format": FORMAT, "config": to_dict(net.config), "card": card}
    atomic_write_bytes(out / CONFIG, json.dumps(meta, indent=2).encode())


def load_encoder(directory: str | os.PathLike[str] | None = None, backend: Any = None) -> ExpressionEncoder:
    """The encoder in ``directory`` (default: the one shipped with this package)."""
    from core.artifact import load_tensors

    d = Path(directory) if directory is not None else ASSET_DIR
    if not (d / CONFIG).exists() or not (d / WEIGHTS).exists():
        raise InputError(
            f"expression encoder {d}: no {CONFIG} + {WEIGHTS} there; rebuild it with 'fine expression train'"
        )
    meta = json.loads((d / CONFIG).read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"expression encoder {d / CONFIG}: not a {FORMAT} (format={meta.get('format')!r})")
    net = ExpressionNet(from_dict(ExpressionConfig, meta["config"], "expression"))
    net.load_state_dict(load_tensors(d / WEIGHTS))
    digest = hashlib.sha256((d / WEIGHTS).read_bytes()).hexdigest()[:12]
    return ExpressionEncoder(net, meta.get("card", {}), backend=backend, digest=digest)


# ----------------------------------------------------------------------------------------------- crops

# FaceMesh landmarks the aligner fits (outer/inner eye corners, nose tip, mouth corners, chin) and where
# they sit in a FER-2013 crop, in units of the crop side: the median over the 715 of 800 random FER-2013
# train faces that FaceMesh found (upscaled 4x, padded; ``training.expression_eval.measure_template``),
# made left-right symmetric (raw medians differed from their mirror by at most 0.007).
ALIGN_LANDMARKS: tuple[int, ...] = (33, 133, 362, 263, 1, 61, 291, 152)
FER_TEMPLATE: np.ndarray = np.array(
    [
        [0.2370, 0.3876],
        [0.3979, 0.4027],
        [0.6021, 0.4027],
        [0.7630, 0.3876],
        [0.5000, 0.6236],
        [0.3528, 0.7578],
        [0.6472, 0.7578],
        [0.5000, 0.9816],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift mapping ``src (k, 2)`` onto ``dst (k, 2)`` (Umeyama,
    no reflection), as a ``(2, 3)`` affine matrix for ``cv2.warpAffine``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0])
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum() / max(s.var(0).sum(), 1e-12))
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def align_face(gray: np.ndarray, landmarks: np.ndarray, size: int = EXPRESSION_SIZE) -> np.ndarray:
    """Gray frame ``(h, w)`` uint8 + FaceMesh landmarks ``(468, >=2)`` in pixels -> ``(size, size)`` uint8
    crop framed like FER-2013 (upright eyes, face scale normalised). Border pixels are replicated."""
    import cv2

    src = np.asarray(landmarks, dtype=np.float64)[list(ALIGN_LANDMARKS), :2]
    m = similarity_transform(src, FER_TEMPLATE * size)
    # warpAffine interpolates bilinearly (no area filter): shrinking a 200-px face to 48 px that way
    # aliases. Warp to an integer multiple of the size first, then average down.
    k = int(np.clip(round(1.0 / max(float(np.sqrt(abs(np.linalg.det(m[:, :2])))), 1e-6)), 1, 4))
    if k > 1:
        m = m * k
    crop = cv2.warpAffine(
        gray, m, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop if k == 1 else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def valence_of(probs: np.ndarray) -> np.ndarray:
    """Expected valence of class probabilities ``(n, 7)`` under :data:`VALENCE` (used for references)."""
    v = np.array([VALENCE[c] for c in EXPRESSIONS], dtype=np.float64)
    return np.asarray(probs, dtype=np.float64) @ v


def param_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
