"""The feature profile: which extractors (name, version, dim, rates) produced a model's input features.

A model is only usable live if the running extractors produce exactly the features it was trained on.
``FineConfig.feature_profile`` holds ``FeatureProfile.to_dict()``; :func:`check_profile` compares it
with what this installation computes and says, in one message, what differs and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from core.config import MODALITIES, ConfigError, from_dict, to_dict
from core.errors import InputError, check


class FeatureProfileError(InputError):
    """A model's feature profile does not match the features this installation computes."""


class SignalConfig(Protocol):
    """An audio extractor's config: the feature width, frames per second and input rate it implies."""

    @property
    def dim(self) -> int: ...

    @property
    def frame_rate(self) -> float: ...

    @property
    def sample_rate(self) -> int: ...


@dataclass(frozen=True)
class ModalityProfile:
    """One modality's extractor.

    frame_rate: feature frames per second (``None`` for text: one step per token).
    sample_rate: input sampling rate the extractor expects (audio Hz), ``None`` where it does not apply.
    options: extractor settings that change the features (e.g. the text encoder source); compared too.
    """

    name: str
    version: str
    dim: int
    frame_rate: float | None = None
    sample_rate: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(isinstance(self.name, str) and self.name != "", "profile name must be a non-empty string")
        check(isinstance(self.version, str) and self.version != "", f"{self.name}: version must be a string")
        check(isinstance(self.dim, int) and self.dim >= 1, f"{self.name}: dim must be a positive int")
        check(self.frame_rate is None or self.frame_rate > 0, f"{self.name}: frame_rate must be > 0")
        check(self.sample_rate is None or self.sample_rate > 0, f"{self.name}: sample_rate must be > 0")
        if self.frame_rate is not None:
            object.__setattr__(self, "frame_rate", float(self.frame_rate))

    @classmethod
    def of_config(
        cls, name: str, version: str, config: SignalConfig, options: dict[str, Any]
    ) -> ModalityProfile:
        """The profile of extractor ``name`` v``version`` whose ``config`` gives its dim and rates."""
        return cls(
            name=name,
            version=version,
            dim=config.dim,
            frame_rate=config.frame_rate,
            sample_rate=config.sample_rate,
            options=options,
        )

    def describe(self) -> str:
        rate = f" at {self.frame_rate:g} fps" if self.frame_rate else ""
        opts = f" {self.options}" if self.options else ""
        return f"{self.name} v{self.version} ({self.dim}-d{rate}){opts}"


@dataclass(frozen=True)
class FeatureProfile:
    """Per-modality extractors of a model's training features; ``None`` for a modality not used."""

    text: ModalityProfile | None = None
    audio: ModalityProfile | None = None
    vision: ModalityProfile | None = None

    def by_modality(self) -> dict[str, ModalityProfile | None]:
        """The extractors keyed by modality, in ``MODALITIES`` order."""
        return {"text": self.text, "audio": self.audio, "vision": self.vision}

    def get(self, modality: str) -> ModalityProfile | None:
        if modality not in MODALITIES:
            raise KeyError(f"unknown modality {modality!r}; use one of {MODALITIES}")
        return self.by_modality()[modality]

    def dims(self) -> dict[str, int]:
        return {m: p.dim for m in MODALITIES if (p := self.get(m)) is not None}

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureProfile:
        return from_dict(cls, data, "feature_profile")


def check_profile(model_profile: FeatureProfile | dict[str, Any] | None, running: FeatureProfile) -> None:
    """Raise :class:`FeatureProfileError` unless ``running`` computes the features ``model_profile`` names.

    Only modalities the model was trained on are compared; the running side may offer more.
    """
    if model_profile is None:
        raise FeatureProfileError(
            "this model has no feature profile: it was trained on features that cannot be computed live "
            "(e.g. COVAREP/FACET benchmark pickles); train it on a feature cache ('fine features build')"
        )
    if isinstance(model_profile, dict):
        try:
            model_profile = FeatureProfile.from_dict(model_profile)
        except ConfigError as exc:
            raise FeatureProfileError(f"the model's feature profile is invalid: {exc}") from None
    problems = []
    for m in MODALITIES:
        want, have = model_profile.get(m), running.get(m)
        if want is None:
            continue
        if have is None:
            problems.append(f"{m}: model needs {want.describe()}, but no {m} extractor is available")
        elif want != have:
            problems.append(
                f"{m}: model needs {want.describe()}, this installation computes {have.describe()}"
            )
    if problems:
        raise FeatureProfileError(
            "feature profile mismatch: "
            + "; ".join(problems)
            + ". Install the fine-msa version the model was trained with, or retrain on features from this one"
        )
