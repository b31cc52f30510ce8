"""FINE: the inference graph (docs/METHOD.md §1). Training-only parts live in ``core.losses``.

Data flow for each modality m (b batch, t time, q queries, d width, f FTRE width)::

    x_m (b, t, d_m) --proj+pos--> (b, t, d) --MoQ--> x̂_m (b, q, d) --FTRE--> tokens_m (b, q, d)
    absent samples: x̂_m := learned absent tokens (b, q, d); the modality's values never reach any output
    [CLS_m ; tokens_m] for all m --fusion Transformer--> CLS outputs (b, 3, d) --heads--> score, unimodal
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.batch import ModalityBatch
from core.config import MODALITIES, FineConfig
from core.model.ftre import FTRE, FTREOutput
from core.model.fusion import FusionTransformer, Heads
from core.model.layers import sinusoidal_positions
from core.model.qformer import MixtureOfQFormers, mixture_of_qformers, stack_expert_weights
from core.text_encoder import TextEncoder

log = logging.getLogger(__name__)


@dataclass
class ModalityFeatures:
    """Intermediate features of one modality, returned (never stored on the module) for the loss."""

    x_hat: Tensor  # (b, q, d) MoQ output (absent tokens where absent)
    gates: Tensor  # (b, E) router weights (unspecified where the modality is absent)
    ftre: FTREOutput
    present: Tensor  # (b,) bool, effective presence


class EmbeddedSequence(NamedTuple):
    """A modality's MoQ input: sequence (b, t, d), key mask (b, t), effective presence (b,)."""

    h: Tensor
    mask: Tensor
    present: Tensor


@dataclass
class FineOutput:
    score: Tensor  # (b,) multimodal prediction
    unimodal: Tensor | None  # (b, 3) one prediction per modality CLS, MODALITIES order
    fused: Tensor  # (b, 3·d) concatenated CLS outputs (the representation the contrastive queue holds)
    modalities: dict[str, ModalityFeatures]


class ModalityEncoder(nn.Module):
    """One modality's projection + positions, MoQ, absent tokens and FTRE (one class; modality is data).

    ``forward`` embeds the modality's sequence for its MoQ. The MoQs of all modalities then run as one
    batched computation (:func:`~core.model.qformer.mixture_of_qformers`) on the parameters that each
    modality's encoder owns; FINE applies the absent tokens and each modality's FTRE."""

    def __init__(self, d_in: int, cfg: FineConfig) -> None:
        super().__init__()
        d = cfg.d_model
        # Per-feature standardisation of the input, fitted on the training data (``training.input_norm``);
        # identity until then. Buffers, so they travel in the artifact and the exported graph.
        self.in_mean: Tensor
        self.in_std: Tensor
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_std", torch.ones(d_in))
        self.proj = nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d))
        self.moq = MixtureOfQFormers(d, cfg.moq)
        self.absent = nn.Parameter(torch.randn(cfg.moq.num_queries, d) * 0.02)
        self.ftre = FTRE(d, cfg.ftre)

    def forward(self, x: Tensor, mask: Tensor, present: Tensor) -> EmbeddedSequence:
        """x (b, t, d_in), mask (b, t), present (b,) -> the MoQ's input sequence (b, t, d) and key mask."""
        # Effective presence: a present modality with no valid step is absent.
        present = present & mask.any(dim=1)
        valid = mask & present[:, None]
        # Zero everything that is padding or absent (NaN-safe), and give absent rows a dummy valid key so
        # attention is always defined; those rows are replaced by the absent tokens in ``FINE.forward``.
        # The standardisation is folded into the input projection, W((x - μ)/σ) + c = (W/σ) x + (c - (W/σ) μ),
        # so it costs nothing per frame. Exact on valid frames; padded frames are zeroed below, and an
        # absent sample's frames never reach an output.
        linear, norm = cast(nn.Linear, self.proj[0]), cast(nn.LayerNorm, self.proj[1])
        weight = linear.weight / self.in_std
        bias = linear.bias - weight @ self.in_mean
        mask = valid | ~present[:, None]
        # Padding may hold NaN or anything, so invalid frames must read as zeros. Wide inputs (768-d text)
        # are instead replaced after the projection by the projection of zeros (the bias), the same values
        # on d instead of d_in columns: a row of a GEMM depends on that row of the input only.
        b, t, d_in = x.shape
        wide = d_in > weight.shape[0]
        if not wide:
            x = x.masked_fill(~valid[..., None], 0.0)
        h = F.linear(x.reshape(b * t, d_in), weight, bias).view(b, t, -1)  # 2-D: one GEMM with its bias
        if wide:
            h = torch.where(valid[..., None], h, bias)
        h = norm(h)
        h = h + sinusoidal_positions(x.shape[1], self.absent.shape[1], x.device, x.dtype)
        h = h * mask[..., None].to(h.dtype)
        return EmbeddedSequence(h, mask, present)


@dataclass(frozen=True)
class PreparedWeights:
    """What :meth:`FINE.prepare_inference` computed: the stacked Q-Former weights and the identity
    (storage, in-place version) of the parameters they were computed from."""

    key: tuple[tuple[int, int], ...]
    weights: list[dict[str, Tensor]]


class FINE(nn.Module):
    """The full inference graph. ``forward(batch) -> FineOutput``; no state is kept between calls.

    For eager inference call :meth:`prepare_inference` once after loading (the runners do): the
    Q-Former's folded, stacked weights are then computed once instead of on every call.
    """

    def __init__(self, config: FineConfig, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        if (config.text_encoder.source is None) != (text_encoder is None):
            raise ValueError(
                "config.text_encoder.source and the text_encoder argument must be given together: "
                "build models with core.artifact.build_model(config) or load_model(path)"
            )
        if text_encoder is not None and text_encoder.hidden_size != config.input_dims["text"]:
            raise ValueError(
                f"text encoder width {text_encoder.hidden_size} != input_dims['text'] "
                f"{config.input_dims['text']}: set input_dims.text to the encoder's hidden size"
            )
        self.config = config
        self.text_encoder = text_encoder
        self.encoders = nn.ModuleDict({m: ModalityEncoder(config.input_dims[m], config) for m in MODALITIES})
        self.fusion = FusionTransformer(config.d_model, len(MODALITIES), config.fusion)
        self.heads = Heads(
            config.d_model,
            len(MODALITIES),
            config.fusion.head_hidden,
            config.unimodal_heads,
            config.fusion.dropout,
        )
        self.prepared: PreparedWeights | None = None  # see prepare_inference

    # ---------------------------------------------------------------------------------- inference weights
    def _moqs(self) -> list[MixtureOfQFormers]:
        return [cast(ModalityEncoder, self.encoders[m]).moq for m in MODALITIES]

    def _weights_key(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.data_ptr(), p._version) for moq in self._moqs() for p in moq.blocks.parameters())

    def prepare_inference(self) -> FINE:
        """Switch to eval mode and compute the Q-Former's inference weights once (returns ``self``).

        Used by ``forward`` in eval mode without autograd (``torch.no_grad`` / ``inference_mode``), the
        way the runners call it; a call with autograd on, in training mode or while tracing for export
        computes them from the parameters as always. The outputs are the same either way, bit for bit.
        The prepared weights are dropped by :meth:`train`, :meth:`load_state_dict` and device or dtype
        moves, and ignored (with a warning) once a Q-Former parameter was changed in place; after
        editing parameters through ``.data`` (which no version counter sees), call this again.
        """
        self.eval()
        with torch.no_grad():
            self.prepared = PreparedWeights(self._weights_key(), stack_expert_weights(self._moqs()))
        return self

    def _prepared_weights(self) -> list[dict[str, Tensor]] | None:
        prepared = self.prepared
        if prepared is None or self.training or torch.is_grad_enabled():
            return None
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return None  # an exported graph computes the folds itself and constant-folds them
        if prepared.key != self._weights_key():
            log.warning(
                "Q-Former parameters changed since prepare_inference(); computing from the parameters"
            )
            self.prepared = None
            return None
        return prepared.weights

    def train(self, mode: bool = True) -> FINE:
        if mode:
            self.prepared = None
        return super().train(mode)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        self.prepared = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Any, recurse: bool = True) -> FINE:  # .to(), .cuda(), .half(), ...
        self.prepared = None
        return super()._apply(fn, recurse)

    # ---------------------------------------------------------------------------------- forward
    def encode_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        assert self.text_encoder is not None
        with torch.set_grad_enabled(self.text_encoder.finetune and torch.is_grad_enabled()):
            return self.text_encoder(ids, mask)

    def forward(self, batch: ModalityBatch) -> FineOutput:
        presence = batch.presence.to(torch.bool)
        seqs: dict[str, EmbeddedSequence] = {}
        for i, m in enumerate(MODALITIES):
            x, mask = batch.features[m], batch.masks[m].to(torch.bool)
            if m == "text" and self.text_encoder is not None:
                x = self.encode_text(x, mask & presence[:, i : i + 1])
            seqs[m] = self.encoders[m](x.float(), mask, presence[:, i])
        encoders = [cast(ModalityEncoder, self.encoders[m]) for m in MODALITIES]
        x_hat, gates = mixture_of_qformers(
            [enc.moq for enc in encoders],
            [seqs[m].h for m in MODALITIES],
            [seqs[m].mask for m in MODALITIES],
            self._prepared_weights(),
        )  # (3, b, q, d)
        present = torch.stack([seqs[m].present for m in MODALITIES])  # (3, b)
        absent = torch.stack([enc.absent for enc in encoders]).unsqueeze(1)  # (3, 1, q, d)
        x_hat = torch.where(present[:, :, None, None], x_hat, absent)
        ftre = [enc.ftre(x) for enc, x in zip(encoders, x_hat.unbind(0), strict=True)]
        feats = {
            m: ModalityFeatures(x_hat=x_hat[i], gates=gates[i], ftre=ftre[i], present=present[i])
            for i, m in enumerate(MODALITIES)
        }
        cls = self.fusion(torch.stack([f.tokens for f in ftre]))  # (b, 3, d)
        score, unimodal = self.heads(cls)
        return FineOutput(score=score, unimodal=unimodal, fused=cls.flatten(1), modalities=feats)

    def predict(
        self, features: dict[str, Tensor], masks: dict[str, Tensor], presence: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Tensor-in, tensor-out entry point for export: ``(score (b,), unimodal (b, 3))``."""
        out = self.forward(ModalityBatch(features, masks, presence))
        uni = out.unimodal if out.unimodal is not None else out.score[:, None].expand(-1, len(MODALITIES))
        return out.score, uni

    def num_parameters(self, include_text_encoder: bool = True) -> int:
        return sum(
            p.numel()
            for name, p in self.named_parameters()
            if include_text_encoder or not name.startswith("text_encoder.")
        )
