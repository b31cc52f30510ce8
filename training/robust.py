"""Training for incomplete input (docs/METHOD.md §6, FSRF ideas): modality and frame dropout, self-distillation.

Three switches, all off by default (then training is exactly the plain FINE training):

- ``modality_dropout`` p: per sample, each present modality is made absent with probability p (its
  presence flag is cleared, so the model swaps in its learned absent tokens). A sample never loses
  *all* of its present modalities: when the draw would, one of them (chosen at random) is kept.
- ``frame_dropout`` r: per sample and modality a rate ``ρ ~ U(0, r)`` is drawn and every valid step is
  dropped with probability ρ, the same operation as the random frame-missing evaluation protocol
  (:func:`drop_frames`): audio/vision frames are zeroed within their length (``frame_fill="zero"``,
  the protocol's convention) or masked out (``"mask"``); text token ids become ``[UNK]`` (the first
  and last token, [CLS]/[SEP], are kept) or are masked out (``text_fill="mask"``, lost words); pre-computed
  text embeddings are masked out. With a frozen text encoder, ``fine train`` keeps the encoder in the
  training graph (instead of caching its embeddings) whenever ``frame_dropout > 0``, so the corrupted pass
  runs the encoder on the corrupted token ids exactly as ``fine evaluate --missing`` does; masking a
  cached contextual embedding is not the same input (the other tokens' embeddings still saw the word).
- ``distill``: FSRF-style self-distillation. Each step runs the model twice: a *teacher* pass on the
  complete batch, which carries the whole FINE loss, and a *student* pass on the corrupted batch, which
  carries ``student_weight · MSE(score, label)`` plus the distillation terms ``distill_weight ·
  MSE(score_s, sg(score_t))`` and ``feature_weight · D(features_s, sg(features_t))``. The features are
  the FTRE outputs (str and utr tokens; the FTRE tokens when FTRE is off) of every modality still present
  in the student, and the fused [CLS] representation of every sample, which is where the semantics of a
  dropped modality can be recovered from the remaining ones. ``D`` is ``distill_kind``: ``"mse"`` or
  ``"kl"`` (KL(teacher ‖ student) of the softmax over the feature axis). The score is always matched by
  MSE: a regression output has no distribution, and the KL of two fixed-variance Gaussians *is* a
  scaled MSE.

  Direction: ``distill_direction="teacher"`` (default) only moves the student towards the (detached)
  teacher; ``"both"`` adds the reverse term (the teacher pulled towards the detached student, the
  "distribution alignment in both directions" of FSRF) with the same weights. The default cannot pull
  the complete-input pass towards degraded input; measured, the two were within noise
  (docs/ROBUSTNESS.md).

Without ``distill`` the dropouts are plain augmentation: one pass on the corrupted batch with the
whole loss. Randomness comes from torch's global generator, so a resumed run continues the same stream.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from core.batch import ModalityBatch
from core.config import MODALITIES, from_dict, to_dict
from core.errors import check as _check

log = logging.getLogger(__name__)

FRAME_FILLS = ("zero", "mask")
TEXT_FILLS = ("unk", "mask")
DISTILL_KINDS = ("mse", "kl")
DIRECTIONS = ("teacher", "both")


@dataclass(frozen=True)
class RobustConfig:
    """Missing-modality training options (``fine train --robust-config FILE`` or the ``--robust-*`` flags)."""

    modality_dropout: float = 0.0
    frame_dropout: float = 0.0
    frame_fill: str = "zero"
    text_fill: str = "unk"  # dropped token ids (text encoder in the graph): [UNK] or masked out
    distill: bool = False
    distill_kind: str = "mse"
    distill_direction: str = "teacher"
    distill_weight: float = 1.0  # prediction term
    feature_weight: float = 0.1  # FTRE + fused-representation term
    student_weight: float = 1.0  # the student's own regression loss
    temperature: float = 1.0  # softmax temperature of the "kl" feature term

    def __post_init__(self) -> None:
        for name in ("modality_dropout", "frame_dropout"):
            v = getattr(self, name)
            _check(0.0 <= v < 1.0, f"robust.{name} must be in [0, 1), got {v}")
        _check(self.frame_fill in FRAME_FILLS, f"robust.frame_fill must be one of {FRAME_FILLS}")
        _check(self.text_fill in TEXT_FILLS, f"robust.text_fill must be one of {TEXT_FILLS}")
        _check(self.distill_kind in DISTILL_KINDS, f"robust.distill_kind must be one of {DISTILL_KINDS}")
        _check(self.distill_direction in DIRECTIONS, f"robust.distill_direction must be one of {DIRECTIONS}")
        for name in ("distill_weight", "feature_weight", "student_weight"):
            v = getattr(self, name)
            _check(v >= 0.0, f"robust.{name} must be >= 0, got {v}")
        _check(self.temperature > 0, f"robust.temperature must be > 0, got {self.temperature}")
        _check(
            not self.distill or self.modality_dropout > 0 or self.frame_dropout > 0,
            "robust.distill needs modality_dropout or frame_dropout > 0 (the student would see the teacher's input)",
        )

    @property
    def enabled(self) -> bool:
        return self.modality_dropout > 0 or self.frame_dropout > 0

    @property
    def corrupts_text_ids(self) -> bool:
        """Training drops text tokens: a frozen text encoder must then run inside the training graph on
        the corrupted ids (as the evaluation protocol does) instead of serving cached embeddings."""
        return self.frame_dropout > 0

    def to_dict(self) -> dict[str, Any]:
        return dict(to_dict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustConfig:
        return from_dict(cls, data, "robust")


# ---------------------------------------------------------------------------------------------------
# corruption (shared by training and the frame-missing evaluation protocol)


def effective_presence(batch: ModalityBatch) -> Tensor:
    """``(b, 3)`` bool: flagged present and at least one valid step."""
    valid = torch.stack([batch.masks[m].to(torch.bool).any(1) for m in MODALITIES], dim=1)
    return batch.presence.to(torch.bool) & valid


def drop_modalities(
    batch: ModalityBatch, p: float, generator: torch.Generator | None = None
) -> ModalityBatch:
    """Clear each present modality's flag with probability ``p``, never all present ones of a sample."""
    present = effective_presence(batch)
    u = torch.rand(present.shape, generator=generator)
    keep = present & (u >= p)
    lost_all = present.any(1) & ~keep.any(1)
    if bool(lost_all.any()):
        # keep the present modality with the largest draw (uniform among the present ones)
        pick = torch.where(present, torch.rand(present.shape, generator=generator), -1.0).argmax(1)
        rescue = torch.zeros_like(keep)
        rescue[torch.arange(len(pick)), pick] = True
        keep = keep | (rescue & lost_all[:, None])
    return batch.with_presence(keep)


def relabel(before: ModalityBatch, after: ModalityBatch) -> ModalityBatch:
    """Labels of a corrupted batch whose samples were assembled from separately labelled parts.

    A cross-corpus pair's label is the mean of its parts' labels (``part_labels``), and its parts are
    independent draws from different corpora: once a part is dropped, nothing left in the sample says what
    its label was, so the target becomes the mean of the labelled parts still present. Asking for the old
    mean would teach "words alone -> the words' label averaged with an unseen voice's", which shrinks every
    single-modality score towards the other corpora's mean. A pair that lost all its labelled parts (only a
    neutral GRID face left) gets them back: its label would have no source. Samples without part labels
    (real recordings, whose modalities belong together) keep their label, as before.
    """
    parts, labels = after.part_labels, after.labels
    if parts is None or labels is None:
        return after
    labelled = torch.isfinite(parts)
    pair = labelled.any(1)
    keep = effective_presence(after)
    orphan = pair & ~(keep & labelled).any(1)
    if bool(orphan.any()):
        after = after.with_presence(torch.where(orphan[:, None], before.presence, after.presence))
        keep = effective_presence(after)  # a part whose every frame was dropped stays absent
    kept = keep & labelled
    # only a pair that lost a labelled part changes label: an intact pair keeps its stored label exactly
    # (recomputing the mean in float32 differs from it in the last bit for about 1 pair in 4, which would
    # wrongly count as a changed target); one with no labelled part left even so keeps it too
    lost = pair & ((effective_presence(before) & labelled) != kept).any(1) & kept.any(1)
    weight = kept.to(parts.dtype)
    mean = (torch.nan_to_num(parts) * weight).sum(1) / weight.sum(1).clamp_min(1.0)
    return after.with_labels(torch.where(lost, mean, labels.to(parts.dtype)))


def drop_frames(
    batch: ModalityBatch,
    drops: dict[str, Tensor],
    fill: str = "zero",
    unk_id: int | None = None,
    text_fill: str = "unk",
) -> ModalityBatch:
    """Apply per-step drop masks ``drops[m] (b, t_m)`` (True = missing) within each sequence's length.

    Text token ids -> ``unk_id`` (the first and last valid token, [CLS]/[SEP], are kept); text embeddings
    -> masked out; audio/vision -> zeroed (``fill="zero"``) or masked out (``fill="mask"``).
    ``text_fill="mask"`` masks dropped token ids out too (words that were never heard, as live ASR
    loses them) instead of writing [UNK].
    """
    feats, masks = dict(batch.features), dict(batch.masks)
    for m, drop in drops.items():
        mask = batch.masks[m].to(torch.bool)
        drop = drop.to(torch.bool) & mask
        x = batch.features[m]
        if m == "text" and not torch.is_floating_point(x) and text_fill == "unk":
            if unk_id is None:
                raise ValueError("text is token ids: drop_frames needs the tokenizer's unk_id")
            length = mask.sum(1)
            pos = torch.arange(mask.shape[1], device=mask.device)[None, :]
            special = (pos == 0) | (pos == (length - 1)[:, None])
            feats[m] = torch.where(drop & ~special, torch.full_like(x, unk_id), x)
        elif m == "text" or fill == "mask":
            masks[m] = mask & ~drop
        else:
            feats[m] = x.masked_fill(drop[..., None], 0.0)
    return ModalityBatch(feats, masks, batch.presence, batch.labels, batch.part_labels)


def random_frame_drops(batch: ModalityBatch, max_rate: float) -> dict[str, Tensor]:
    """Training draws: per sample and modality ``ρ ~ U(0, max_rate)``, each step missing w.p. ρ."""
    out = {}
    for m in MODALITIES:
        mask = batch.masks[m]
        rate = torch.rand(mask.shape[0], 1) * max_rate
        out[m] = torch.rand(mask.shape) < rate
    return out


# ---------------------------------------------------------------------------------------------------
# the training-side object the Trainer calls


def _feature_gap(student: Tensor, teacher: Tensor, kind: str, temperature: float) -> Tensor:
    """Mean divergence of ``student`` from ``teacher`` (same shape, last axis = features).

    ``mse`` compares the features after a parameter-free layer norm: the term then measures direction and
    pattern, not scale. On raw features it grew without bound once the MI terms inflated the FTRE outputs
    (0.05 at epoch 1, 88,000 at epoch 6 on the FER-2013 corpus) and drowned every other loss."""
    if kind == "kl":
        t = nn.functional.log_softmax(teacher / temperature, dim=-1)
        s = nn.functional.log_softmax(student / temperature, dim=-1)
        return (t.exp() * (t - s)).sum(-1).mean()
    shape = student.shape[-1:]
    return nn.functional.mse_loss(
        nn.functional.layer_norm(student, shape), nn.functional.layer_norm(teacher, shape)
    )


def _distill_features(out: Any, present: Tensor, fused_rows: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(features, row mask) pairs to align: FTRE outputs per modality, and the fused representation on
    ``fused_rows``."""
    pairs: list[tuple[Tensor, Tensor]] = [(out.fused, fused_rows)]
    mods = getattr(out, "modalities", None) or {}
    for i, m in enumerate(MODALITIES):
        if m not in mods:
            continue
        f = mods[m].ftre
        parts = [f.shared_tr, f.unique_tr] if f.shared_tr is not None else [f.tokens]
        pairs.extend((p, present[:, i]) for p in parts if p is not None)
    return pairs


class RobustTraining:
    """Corrupts training batches and adds the self-distillation loss (see the module docstring)."""

    def __init__(self, cfg: RobustConfig, unk_id: int | None = None) -> None:
        self.cfg = cfg
        self.unk_id = unk_id

    def corrupt(self, batch: ModalityBatch) -> ModalityBatch:
        """Dropped frames and modalities; a cross-corpus pair's label follows the parts it still has."""
        c = self.cfg
        out = batch
        if c.frame_dropout > 0:
            drops = random_frame_drops(out, c.frame_dropout)
            out = drop_frames(out, drops, c.frame_fill, self.unk_id, c.text_fill)
        if c.modality_dropout > 0:
            out = drop_modalities(out, c.modality_dropout)
        return relabel(batch, out)

    def distill_loss(
        self, model: nn.Module, batch: ModalityBatch, teacher: Any
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Student pass on a corrupted copy of ``batch``; its loss against labels and the teacher."""
        c = self.cfg
        student_batch = self.corrupt(batch)
        student = model(student_batch)
        assert batch.labels is not None and student_batch.labels is not None
        labels = student_batch.labels.to(student.score.dtype)
        present = effective_presence(student_batch) & effective_presence(batch)
        # rows whose target changed (a pair lost a labelled part) are not pulled towards the teacher, who
        # saw that part: what it knew cannot be recovered from the independent parts that are left
        same = labels == batch.labels.to(labels.dtype)
        terms: dict[str, Tensor] = {"student_mp": nn.functional.mse_loss(student.score, labels)}
        directions = (
            [(student, teacher)]
            if c.distill_direction == "teacher"
            else [
                (student, teacher),
                (teacher, student),
            ]
        )
        pred = feat = labels.new_zeros(())
        for moving, target in directions:
            if bool(same.any()):
                pred = pred + nn.functional.mse_loss(moving.score[same], target.score[same].detach())
            gaps = []
            for (fm, rows), (ft, _) in zip(
                _distill_features(moving, present, same),
                _distill_features(target, present, same),
                strict=True,
            ):
                if bool(rows.any()):
                    gaps.append(_feature_gap(fm[rows], ft[rows].detach(), c.distill_kind, c.temperature))
            if gaps:
                feat = feat + torch.stack(gaps).mean()
        terms["distill_pred"], terms["distill_feat"] = pred, feat
        total = c.student_weight * terms["student_mp"] + c.distill_weight * pred + c.feature_weight * feat
        return total, {k: v.detach() for k, v in terms.items()}


# ---------------------------------------------------------------------------------------------------
# fine train: flags and config file


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("missing-modality training (all off by default; docs/ROBUSTNESS.md)")
    g.add_argument("--robust-config", type=str, help="JSON file of robust training options (RobustConfig)")
    g.add_argument("--modality-dropout", type=float, help="per-sample probability of dropping each modality")
    g.add_argument("--frame-dropout", type=float, help="max per-sample rate of dropped frames/tokens")
    g.add_argument("--frame-fill", choices=FRAME_FILLS, help="dropped audio/vision frames: zeroed or masked")
    g.add_argument(
        "--text-fill", choices=TEXT_FILLS, help="dropped text tokens: [UNK] (default) or masked out"
    )
    g.add_argument("--distill", choices=("off", *DISTILL_KINDS), help="self-distillation: off, mse or kl")
    g.add_argument("--distill-direction", choices=DIRECTIONS, help="teacher->student only, or both")


def config_from_args(args: argparse.Namespace, file_data: dict[str, Any]) -> RobustConfig:
    """The file's options, overridden by any flag given on the command line."""
    data = dict(file_data)
    flags = {
        "modality_dropout": args.modality_dropout,
        "frame_dropout": args.frame_dropout,
        "frame_fill": args.frame_fill,
        "text_fill": args.text_fill,
        "distill_direction": args.distill_direction,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.distill is not None:
        data["distill"] = args.distill != "off"
        if args.distill != "off":
            data["distill_kind"] = args.distill
    return RobustConfig.from_dict(data)
