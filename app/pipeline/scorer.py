"""Features + score stage: one unit's audio, face features and words -> a ModalityBatch -> the Runner.

Extraction is :mod:`core.features` (the same extractors training used, configured from the model's
feature profile, :mod:`app.pipeline.model_info`) and inference is :mod:`export.runtime` (any backend,
with Shapley contributions); this module only assembles the batch and the timeline rows. ``fine score``
feeds it the slices of a decoded file (:mod:`app.pipeline.media`); the live app feeds it the same
pieces from its buffers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.pipeline.media import Media
from app.pipeline.model_info import model_info
from app.pipeline.segment import Unit
from app.pipeline.timeline import TimelineRow
from core.batch import ModalityBatch
from core.config import MODALITIES
from core.features.clip import ExtractorConfig, FeatureExtractors
from core.features.profile import FeatureProfile, check_profile
from export.runtime import Runner, create_runner, find_model_files
from export.runtime.expression_runner import expression_backend

log = logging.getLogger(__name__)


@dataclass
class UnitFeatures:
    """Model inputs of one unit; ``None`` where the modality is absent."""

    text: np.ndarray | None  # (t, d) embeddings, or (t,) token ids for graphs that take ids
    audio: np.ndarray | None  # (n_a, d_a)
    vision: np.ndarray | None  # (n_v, d_v) frames with a face only

    def by_modality(self) -> dict[str, np.ndarray | None]:
        """The inputs keyed by modality, in ``MODALITIES`` order."""
        return {"text": self.text, "audio": self.audio, "vision": self.vision}


class Scorer:
    """Feature extractors configured from the model's profile + a runner. One per process (or stream)."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        threads: int | None = None,
        extractors: FeatureExtractors | None = None,
    ) -> None:
        self.info = model_info(model)
        self.extractors = extractors or FeatureExtractors(
            ExtractorConfig.from_profile(self.info.profile, self.info.folder)
        )
        check_profile(self.info.profile, self._running_profile())
        self.runner: Runner = create_runner(model, backend, threads=threads)
        self.runner.activate()
        encoder = self.extractors.vision.expression_encoder if self.info.profile.vision is not None else None
        if encoder is not None and encoder.backend is None:  # the face encoder on the fusion model's runtime
            encoder.backend = expression_backend(self.runner.name, find_model_files(model), threads=1)
        log.info("model %s on %s", self.info.model_id, self.runner.describe())

    def _running_profile(self) -> FeatureProfile:
        ex, want = self.extractors, self.info.profile
        return FeatureProfile(
            text=ex.text.profile if want.text is not None else None,  # loads the encoder only if needed
            audio=ex.audio.profile,
            vision=ex.vision.profile,
        )

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def sample_rate(self) -> int:
        return self.extractors.config.audio.sample_rate

    # ---------------------------------------------------------------------------------- features
    def unit_features(self, media: Media, unit: Unit) -> UnitFeatures:
        """Slice the recording to ``unit`` and compute its features with the shared extractors."""
        return self.features(*media.slice(unit.start, unit.end), unit.text)

    def features(self, audio: np.ndarray | None, vision_rows: np.ndarray | None, text: str) -> UnitFeatures:
        """Raw pieces of one unit -> model inputs (the live app's entry point).

        audio: mono samples at :attr:`sample_rate`; vision_rows: face features of the frames in the unit
        that have a face (``VisionFeatureExtractor.process`` output); text: the unit's words.
        """
        a = None
        if audio is not None and audio.size:
            feats = self.extractors.audio.extract(audio)
            a = feats.features if feats.present else None
        v = vision_rows if vision_rows is not None and vision_rows.shape[0] else None
        t = None
        if text.strip() and self.info.profile.text is not None:
            tf = self.extractors.text.encode(text.strip())
            t = tf.ids if self.runner.text_input == "ids" else tf.embeddings
        return UnitFeatures(text=t, audio=a, vision=v)

    # ---------------------------------------------------------------------------------- inference
    def batch(self, units: list[UnitFeatures]) -> ModalityBatch:
        seqs: dict[str, list[torch.Tensor | None]] = {m: [] for m in MODALITIES}
        for u in units:
            for m, x in u.by_modality().items():
                seqs[m].append(None if x is None else torch.from_numpy(np.ascontiguousarray(x)))
        batch = ModalityBatch.from_sequences(seqs, feature_dims=self.info.input_dims)
        if self.runner.text_input == "ids" and batch.features["text"].ndim == 3:  # no unit has words
            b = batch.batch_size
            batch.features["text"] = torch.zeros(b, 1, dtype=torch.int64)
        return batch

    def score(self, units: list[Unit], feats: list[UnitFeatures], first_index: int = 0) -> list[TimelineRow]:
        """Run the model (with Shapley contributions) on a batch of units -> timeline rows."""
        if not units:
            return []
        pred = self.runner.infer(self.batch(feats), contributions=True)
        assert pred.contributions is not None and pred.baseline is not None
        rows = []
        for i, u in enumerate(units):
            rows.append(
                TimelineRow(
                    index=first_index + i,
                    kind=u.kind,
                    start=round(u.start, 3),
                    end=round(u.end, 3),
                    text=u.text,
                    score=float(pred.score[i]),
                    unimodal=_triple(pred.unimodal[i], float),
                    contributions=_triple(pred.contributions[i], float),
                    presence=_triple(pred.presence[i], bool),
                    baseline=float(pred.baseline[i]),
                    model_id=self.model_id,
                )
            )
        return rows

    def close(self) -> None:
        self.runner.close()


def _triple(x: Any, kind: type) -> Any:
    return tuple(kind(v) for v in np.asarray(x).reshape(-1)[: len(MODALITIES)])
