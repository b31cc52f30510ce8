"""A text adapter: low-rank updates (LoRA) of a BERT-family encoder's attention and feed-forward layers.

The words branch reads token states of a sentence encoder. Frozen, those states carry sentiment only as
well as a ridge regression on them finds it (MOSI test Corr 0.74 for all-mpnet-base-v2); adapting the
encoder to sentiment (``training.text_adapter``) reaches more, and an adapter is small enough to ship
inside a model artifact (about 1 M numbers for mpnet at rank 8, against 110 M for the encoder).

At run time the adapter is *merged*: ``W += (alpha / rank) * B @ A`` on each adapted ``nn.Linear``, so the
encoder is again a plain ``transformers`` model, as fast as before and exportable as before. A model
records its adapter by digest in the feature profile (``options.adapter``), and the adapter file travels
in the model directory as :data:`ADAPTER_FILE`.

File format: safetensors, tensors ``<module path>.lora_a`` ``(rank, in)`` and ``<module path>.lora_b``
``(out, rank)``, metadata ``format``, ``version``, ``rank``, ``alpha``, ``encoder`` (what it adapts).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from core.config import ConfigError
from core.errors import InputError

log = logging.getLogger(__name__)

ADAPTER_FILE = "text_adapter.safetensors"
FORMAT = "fine-text-lora"
VERSION = "1"


@dataclass(frozen=True)
class AdapterConfig:
    rank: int = 8
    alpha: float = 16.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"text adapter rank must be >= 1, got {self.rank}")
        if not self.alpha > 0:
            raise ConfigError(f"text adapter alpha must be > 0, got {self.alpha}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """``base(x) + scale * x A^T B^T``; ``base`` frozen. ``B`` starts at zero, so training starts from the
    unadapted encoder."""

    def __init__(self, base: nn.Linear, cfg: AdapterConfig) -> None:
        super().__init__()
        self.base = base
        self.scale = cfg.scale
        self.lora_a = nn.Parameter(torch.randn(cfg.rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, cfg.rank))

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale


def adapted(name: str) -> bool:
    """Which linear layers get an adapter: attention projections and the feed-forward input layer."""
    return ("attention" in name or "intermediate" in name) and not name.startswith("pooler")


def attach(backbone: nn.Module, cfg: AdapterConfig) -> list[str]:
    """Freeze ``backbone`` and wrap its adapted linear layers in :class:`LoRALinear` (in place); their
    module paths."""
    for p in backbone.parameters():
        p.requires_grad_(False)
    names = [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear) and adapted(n)]
    if not names:
        raise InputError("the text encoder has no attention or feed-forward linear layers to adapt")
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = backbone.get_submodule(parent) if parent else backbone
        setattr(owner, child, LoRALinear(getattr(owner, child), cfg))
    return names


def adapter_tensors(backbone: nn.Module) -> dict[str, Tensor]:
    """The adapter's numbers, keyed as in the file format."""
    out: dict[str, Tensor] = {}
    for name, m in backbone.named_modules():
        if isinstance(m, LoRALinear):
            out[f"{name}.lora_a"] = m.lora_a.detach().float().contiguous().clone()
            out[f"{name}.lora_b"] = m.lora_b.detach().float().contiguous().clone()
    return out


def save_adapter(tensors: dict[str, Tensor], cfg: AdapterConfig, encoder: str, path: Path) -> str:
    """Write an adapter file atomically; its digest (what a feature profile records)."""
    from safetensors.torch import save

    from core.fileio import atomic_write_bytes

    meta = {"format": FORMAT, "version": VERSION, "rank": str(cfg.rank), "alpha": repr(cfg.alpha)}
    atomic_write_bytes(path, save(tensors, metadata={**meta, "encoder": encoder}))
    return adapter_digest(path)


def adapter_digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: the adapter's identity in a feature profile."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_adapter(path: Path) -> tuple[dict[str, Tensor], AdapterConfig]:
    """An adapter file's tensors and settings; a one-line error for anything that is not one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (OSError, SafetensorError) as e:
        raise InputError(
            f"text adapter {path}: not a readable safetensors file ({e}); rebuild the model"
        ) from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(
            f"text adapter {path}: format {meta.get('format')!r} v{meta.get('version')!r}, expected {FORMAT} "
            f"v{VERSION}; rebuild the model with this version of fine-msa"
        )
    try:
        cfg = AdapterConfig(int(meta["rank"]), float(meta["alpha"]))
    except (KeyError, ValueError, ConfigError) as e:
        raise InputError(f"text adapter {path}: bad rank/alpha metadata ({e})") from None
    return tensors, cfg


@torch.no_grad()
def merge_adapter(backbone: nn.Module, path: Path) -> int:
    """Add the adapter's low-rank updates into ``backbone``'s linear layers (in place); how many layers."""
    tensors, cfg = load_adapter(path)
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    for name in names:
        a, b = tensors.get(f"{name}.lora_a"), tensors.get(f"{name}.lora_b")
        try:
            layer = backbone.get_submodule(name)
        except AttributeError:
            layer = None
        if a is None or b is None or not isinstance(layer, nn.Linear):
            raise InputError(
                f"text adapter {path}: {name} is not a linear layer of this text encoder; the adapter was "
                "made for another encoder"
            )
        if a.shape != (cfg.rank, layer.in_features) or b.shape != (layer.out_features, cfg.rank):
            raise InputError(
                f"text adapter {path}: {name} has shapes {tuple(a.shape)}/{tuple(b.shape)}, the encoder's "
                f"layer is {layer.out_features}x{layer.in_features}; the adapter was made for another encoder"
            )
        layer.weight += (cfg.scale * b @ a).to(layer.weight.dtype)
    log.info("merged a rank-%d text adapter into %d layers (%s)", cfg.rank, len(names), path)
    return len(names)
