"""The Scorer: one unit's audio, face features and words -> a ModalityBatch -> the Runner -> scores.

Extraction is :mod:`core.features` (the same extractors training used, configured from the model's
feature profile) and inference is :mod:`export.runtime` (any backend, with Shapley contributions);
this module only slices a recording into units and assembles the batch. ``fine score`` feeds it a
decoded file (:meth:`Scorer.load_media`); the live app feeds it the same pieces from its buffers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.pipeline.segment import Unit
from app.pipeline.timeline import TimelineRow
from core.batch import ModalityBatch
from core.config import MODALITIES
from core.errors import InputError
from core.features.clip import ExtractorConfig, FeatureExtractors
from core.features.decode import MediaInfo, decode_audio_partial, probe
from core.features.profile import FeatureProfile, FeatureProfileError, check_profile
from core.features.vision import VisionFeatures
from export.runtime import Runner, create_runner, find_model_files
from export.runtime.expression_runner import expression_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model before running it."""

    path: Path
    model_id: str  # card name + digest of the weights: identifies the model in every timeline row
    profile: FeatureProfile
    label_range: tuple[float, float]
    input_dims: dict[str, int]  # the graph's feature widths (also for modalities the profile lacks)


def model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read the feature profile and identity of an artifact directory or an ``.onnx`` file."""
    from core.artifact import read_config
    from export.metadata import file_digest, read_metadata

    files = find_model_files(path)  # InputError when the path does not exist
    if files.artifact is not None:
        meta = read_config(files.artifact)
        config = meta["model"]
        profile, card = config.get("feature_profile"), meta.get("card") or {}
        weights = files.artifact / "model.safetensors"
        digest_of = weights if weights.is_file() else (files.onnx or files.engine)
    elif files.onnx is not None:
        meta = read_metadata(files.onnx)  # onnxruntime's session metadata: no onnx package needed
        config = json.loads(meta.get("config", "{}"))
        profile = config.get("feature_profile")
        card = json.loads(meta.get("card", "{}"))
        digest_of = files.onnx
    elif files.engine is None:
        raise InputError(
            f"{path}: not a model (no config.json, .onnx or .engine in it); pass a directory written by "
            "'fine train' or 'fine export', or leave --model out for the shipped default model"
        )
    else:
        raise InputError(
            f"{path}: an .engine alone does not say its feature profile; pass its model directory"
        )
    if profile is None:
        check_profile(None, FeatureProfile())  # raises the explanatory FeatureProfileError
    digest = file_digest(digest_of, 12) if digest_of is not None else "unknown"
    name = str(card.get("name") or "fine")
    try:
        prof = FeatureProfile.from_dict(profile)
    except ValueError as exc:
        raise FeatureProfileError(f"{path}: the model's feature profile is invalid: {exc}") from None
    lo, hi = (float(x) for x in config.get("label_range", (-3.0, 3.0)))
    dims = {m: int(d) for m, d in (config.get("input_dims") or prof.dims()).items()}
    return ModelInfo(Path(path), f"{name}-{digest}", prof, (lo, hi), dims)


@dataclass
class Media:
    """A decoded recording: audio at the extractor's rate and face features of the whole video."""

    path: Path
    info: MediaInfo
    audio: np.ndarray | None  # (n,) float32 mono, None without an audio track
    vision: VisionFeatures | None  # None without a video track (or before Scorer.track_faces)
    sample_rate: int
    fps: float
    partial: str | None = None  # why decoding stopped early (the samples before the break are kept)

    @property
    def duration(self) -> float:
        """Seconds that could be decoded (a cut-off file declares more: see :attr:`truncated`)."""
        lengths = [0.0]
        if self.audio is not None:
            lengths.append(self.audio.shape[0] / self.sample_rate)
        if self.vision is not None and self.vision.times.size:
            lengths.append(float(self.vision.times[-1]) + 1.0 / self.fps)
        return max(lengths)

    @property
    def truncated(self) -> bool:
        """Much less could be decoded than the container declares: a cut-off or damaged file."""
        declared = self.info.duration
        return declared is not None and self.duration < 0.9 * declared - 0.5

    @property
    def has_face(self) -> bool:
        return self.vision is not None and bool(self.vision.present.any())


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
        self.extractors = extractors or FeatureExtractors(ExtractorConfig.from_profile(self.info.profile))
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

    # ---------------------------------------------------------------------------------- offline input
    def load_media(self, path: str | os.PathLike[str]) -> Media:
        """Decode a file (InputError when it cannot be read) and track faces through all of it."""
        return self.track_faces(self.decode(path))

    def decode(self, path: str | os.PathLike[str]) -> Media:
        """Probe and decode the audio; faces come from :meth:`track_faces` (which may run while ASR
        works on the audio)."""
        info = probe(path)
        if not info.has_audio and not info.has_video:
            raise InputError(f"{path}: has neither an audio nor a video track")
        audio, partial = decode_audio_partial(path, self.sample_rate) if info.has_audio else (None, None)
        fps = self.extractors.config.vision.fps
        return Media(Path(path), info, audio, None, self.sample_rate, fps, partial)

    def track_faces(self, media: Media) -> Media:
        """Face features of every sampled frame of the video track (none without one)."""
        if media.info.has_video:
            media.vision = self.extractors.vision.extract_file(media.path)
        if media.duration <= 0:
            raise InputError(f"{media.path}: contains no audio samples and no video frames")
        return media

    # ---------------------------------------------------------------------------------- features
    def unit_features(self, media: Media, unit: Unit) -> UnitFeatures:
        """Slice the recording to ``unit`` and compute its features with the shared extractors."""
        audio = None
        if media.audio is not None:
            s0, s1 = (round(t * self.sample_rate) for t in (unit.start, unit.end))
            audio = media.audio[max(0, s0) : max(0, s1)]
        vision_rows = None
        if media.vision is not None:
            t = media.vision.times
            keep = (t >= unit.start) & (t < unit.end) & media.vision.present
            vision_rows = media.vision.features[keep]
        return self.features(audio, vision_rows, unit.text)

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
