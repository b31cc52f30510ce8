"""MMIM (Han, Chen, Poria, EMNLP 2021), the baseline we ship beside FINE (docs/METHOD.md §5).

Model: text [CLS] (first token) of the transformer encoder or of pre-computed token embeddings (or,
with ``text_pool="mean"``, their masked mean through a linear map),
1-layer LSTM encoders for audio and vision that read the *masked* sequence and take the output at the
last valid step (equal to a packed LSTM's final state, but exportable), a fusion MLP (-> 128, the fusion
vector) and a score head. A modality that is absent for a sample is replaced by a learned vector.

Training-only (:class:`MMIMLoss`): a Barber–Agakov lower bound between text and each other modality,
``I(t; m) >= H(m) + E log q(m | t)`` with a Gaussian ``q`` (mean and log-variance MLPs) whose
log-likelihood keeps the ``−½·logvar`` term the public code drops, and ``H(m)`` estimated from the
current batch plus a memory of past batches split by label sign (skipped, not NaN, when a sign has too
few samples); and CPC (InfoNCE) between the fusion vector and each unimodal vector. The BA networks are
fitted first in every epoch (``critic_schedule = "epoch"``), then the model minimises
``L1 + α·CPC − β·BA``. Selection uses the validation L1 (``valid_criterion = "mae"``), never the test set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.batch import ModalityBatch
from core.config import MODALITIES, ConfigError, TextEncoderConfig, from_dict, to_dict
from core.errors import check_at_least
from core.model.layers import masked_mean
from core.text_encoder import TextEncoder

ARCHITECTURE = "mmim"


@dataclass(frozen=True)
class MMIMConfig:
    input_dims: dict[str, int] = field(default_factory=lambda: {"text": 768, "audio": 5, "vision": 20})
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    rnn_hidden: int = 32  # LSTM width for audio and vision
    rnn_out: int = 16  # audio/vision representation
    fusion_dim: int = 128  # d_prjh: the fusion vector
    dropout: float = 0.1
    text_pool: str = "cls"  # "cls": first token (BERT [CLS]); "mean": masked mean + linear map
    label_range: tuple[float, float] = (-3.0, 3.0)
    feature_profile: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input_dims, dict) or set(self.input_dims) != set(MODALITIES):
            raise ConfigError(
                f"input_dims must have exactly the keys {list(MODALITIES)}, got {self.input_dims!r}"
            )
        check_at_least(self, "mmim", "rnn_hidden rnn_out fusion_dim")
        if self.text_pool not in ("cls", "mean"):
            raise ConfigError(f"mmim.text_pool must be 'cls' or 'mean', got {self.text_pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"mmim.dropout must be in [0, 1), got {self.dropout}")
        lo, hi = self.label_range
        object.__setattr__(self, "label_range", (float(lo), float(hi)))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMIMConfig:
        return from_dict(cls, data)


@dataclass
class MMIMOutput:
    score: Tensor  # (b,)
    fused: Tensor  # (b, fusion_dim)
    reps: dict[str, Tensor]  # per modality (b, d_m): text (b, d_text), audio/vision (b, rnn_out)
    present: Tensor  # (b, 3) effective presence
    unimodal: Tensor | None = None


class SeqEncoder(nn.Module):
    """1-layer LSTM over a padded sequence; output at the last valid step -> linear."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(d_in, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.rnn(x * mask[..., None].to(x.dtype))  # (b, t, hidden)
        last = (mask.long().sum(1) - 1).clamp_min(0)  # (b,)
        h_last = h.gather(1, last[:, None, None].expand(-1, 1, h.shape[-1])).squeeze(1)
        return self.out(self.drop(h_last))


class MMIM(nn.Module):
    def __init__(self, config: MMIMConfig, text_encoder: TextEncoder | None = None) -> None:
        super().__init__()
        if (config.text_encoder.source is None) != (text_encoder is None):
            raise ValueError(
                "config.text_encoder.source and the text_encoder argument must be given together"
            )
        self.config = config
        self.text_encoder = text_encoder
        d_t = config.input_dims["text"]
        self.text_proj = nn.Linear(d_t, d_t) if config.text_pool == "mean" else nn.Identity()
        self.seq = nn.ModuleDict(
            {
                m: SeqEncoder(config.input_dims[m], config.rnn_hidden, config.rnn_out, config.dropout)
                for m in ("audio", "vision")
            }
        )
        self.dims = {"text": d_t, "audio": config.rnn_out, "vision": config.rnn_out}
        self.absent = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.dims[m])) for m in MODALITIES})
        total = sum(self.dims.values())
        f = config.fusion_dim
        self.fusion = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(total, f), nn.Tanh(), nn.Linear(f, f), nn.Tanh()
        )
        self.head = nn.Linear(f, 1)

    def forward(self, batch: ModalityBatch) -> MMIMOutput:
        presence = batch.presence.to(torch.bool)
        reps: dict[str, Tensor] = {}
        eff = []
        for i, m in enumerate(MODALITIES):
            x, mask = batch.features[m], batch.masks[m].to(torch.bool)
            present = presence[:, i] & mask.any(1)
            valid = mask & present[:, None]
            if m == "text":
                if self.text_encoder is not None:  # token ids -> token embeddings
                    with torch.set_grad_enabled(self.text_encoder.finetune and torch.is_grad_enabled()):
                        x = self.text_encoder(x, valid | ~present[:, None])
                x = x.float()
                if self.config.text_pool == "cls":
                    r = x[:, 0]
                else:
                    r = self.text_proj(masked_mean(x.masked_fill(~valid[..., None], 0.0), valid))
            else:
                r = self.seq[m](x.float().masked_fill(~valid[..., None], 0.0), valid)
            reps[m] = torch.where(present[:, None], r, self.absent[m].expand_as(r))
            eff.append(present)
        fused = self.fusion(torch.cat([reps[m] for m in MODALITIES], dim=-1))
        return MMIMOutput(self.head(fused).squeeze(-1), fused, reps, torch.stack(eff, 1))

    def predict(
        self, features: dict[str, Tensor], masks: dict[str, Tensor], presence: Tensor
    ) -> tuple[Tensor, Tensor]:
        score = self.forward(ModalityBatch(features, masks, presence)).score
        return score, score[:, None].expand(-1, len(MODALITIES))


# ---------------------------------------------------------------------------------------------------
# training objective


@dataclass(frozen=True)
class MMIMLossConfig:
    alpha_cpc: float = 0.1
    beta_ba: float = 0.1
    ba_hidden: int = 64
    memory: int = 256  # past representations kept per label sign for the entropy estimate
    min_entropy_rows: int = 4  # fewer rows of a sign than this: that sign is left out of H


@dataclass
class LossOutput:
    total: Tensor
    terms: dict[str, Tensor]


class GaussianQ(nn.Module):
    """q(y | x) = N(mu(x), diag exp(logvar(x)))."""

    def __init__(self, dx: int, dy: int, hidden: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dx, hidden), nn.ReLU(), nn.Linear(hidden, dy))
        self.logvar = nn.Sequential(nn.Linear(dx, hidden), nn.ReLU(), nn.Linear(hidden, dy))

    def log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        mu, logvar = self.mu(x), self.logvar(x).clamp(-8.0, 8.0)
        ll = -0.5 * (y - mu) ** 2 / logvar.exp() - 0.5 * logvar - 0.5 * math.log(2 * math.pi)
        return ll.sum(-1).mean()


class CPC(nn.Module):
    """InfoNCE between the fusion vector and a unimodal vector (MMIM's CPC term); returns the loss."""

    def __init__(self, d_x: int, d_fused: int) -> None:
        super().__init__()
        self.net = nn.Linear(d_fused, d_x)

    def forward(self, x: Tensor, fused: Tensor) -> Tensor:
        x_pred = nn.functional.normalize(self.net(fused), dim=-1)
        x = nn.functional.normalize(x, dim=-1)
        pos = (x * x_pred).sum(-1)
        neg = torch.logsumexp(x @ x_pred.T, dim=-1)
        return -(pos - neg).mean()


class MMIMLoss(nn.Module):
    critic_schedule = "epoch"
    valid_criterion = "mae"

    def __init__(self, model_cfg: MMIMConfig, cfg: MMIMLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MMIMLossConfig()
        d_t, d_o = model_cfg.input_dims["text"], model_cfg.rnn_out
        self.ba = nn.ModuleDict({m: GaussianQ(d_t, d_o, cfg.ba_hidden) for m in ("audio", "vision")})
        dims = {"text": d_t, "audio": d_o, "vision": d_o}
        self.cpc = nn.ModuleDict({m: CPC(dims[m], model_cfg.fusion_dim) for m in MODALITIES})
        self.memory: dict[tuple[str, int], Tensor] = {}

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.ba.parameters())

    def main_parameters(self) -> list[nn.Parameter]:
        return list(self.cpc.parameters())

    def _pairs(self, out: MMIMOutput) -> list[tuple[str, Tensor]]:
        return [(m, out.present[:, 0] & out.present[:, i]) for i, m in ((1, "audio"), (2, "vision"))]

    def _q(self, m: str) -> GaussianQ:
        q = self.ba[m]
        assert isinstance(q, GaussianQ)
        return q

    def critic_loss(self, out: MMIMOutput, labels: Tensor) -> Tensor:
        """Stage 1 of each epoch: fit q(m | t) on detached features (maximise the log-likelihood)."""
        total = labels.new_zeros(())
        for m, rows in self._pairs(out):
            if int(rows.sum()) >= 2:
                total = total - self._q(m).log_likelihood(
                    out.reps["text"][rows].detach(), out.reps[m][rows].detach()
                )
        return total

    def _entropy(self, m: str, y: Tensor, labels: Tensor) -> Tensor:
        """Gaussian entropy of y per label sign (batch ∪ memory); mean over the signs with enough rows."""
        parts = []
        for sign, sel in ((1, labels > 0), (-1, labels < 0)):
            mem = self.memory.get((m, sign))
            cur = y[sel]
            allv = cur if mem is None else torch.cat([cur, mem])
            if allv.shape[0] >= max(self.cfg.min_entropy_rows, 2):
                c = allv - allv.mean(0)
                cov = c.T @ c / (allv.shape[0] - 1) + 1e-4 * torch.eye(y.shape[1], dtype=y.dtype)
                parts.append(0.5 * torch.logdet(cov) + 0.5 * y.shape[1] * (1 + math.log(2 * math.pi)))
            if self.training and cur.shape[0]:
                keep = cur.detach() if mem is None else torch.cat([cur.detach(), mem])
                self.memory[(m, sign)] = keep[: self.cfg.memory]
        return torch.stack(parts).mean() if parts else y.new_zeros(())

    def forward(self, out: MMIMOutput, labels: Tensor, part_labels: Tensor | None = None) -> LossOutput:
        labels = labels.to(out.score.dtype)
        terms: dict[str, Tensor] = {"l1": nn.functional.l1_loss(out.score, labels)}
        zero = labels.new_zeros(())
        ba, cpc = [], []
        for m, rows in self._pairs(out):
            if int(rows.sum()) >= 2:
                lld = self._q(m).log_likelihood(out.reps["text"][rows], out.reps[m][rows])
                ba.append(lld + self._entropy(m, out.reps[m][rows], labels[rows]))
        for i, m in enumerate(MODALITIES):
            rows = out.present[:, i]
            if int(rows.sum()) >= 2:
                cpc.append(self.cpc[m](out.reps[m][rows], out.fused[rows]))
        terms["ba"] = torch.stack(ba).sum() if ba else zero
        terms["cpc"] = torch.stack(cpc).sum() if cpc else zero
        total = terms["l1"] + self.cfg.alpha_cpc * terms["cpc"] - self.cfg.beta_ba * terms["ba"]
        return LossOutput(total, {k: v.detach() for k, v in terms.items()})


# ---------------------------------------------------------------------------------------------------
# artifacts (same layout as core.artifact: model.safetensors + config.json, architecture "mmim")


def build_mmim(config: MMIMConfig) -> MMIM:
    from core.text_encoder import load_text_encoder

    encoder = load_text_encoder(config.text_encoder) if config.text_encoder.source else None
    return MMIM(config, encoder)


def save_mmim(model: MMIM, directory: str | Path, card: dict[str, Any] | None = None) -> Path:
    from core import __version__
    from core.artifact import (
        CONFIG,
        FORMAT,
        FORMAT_VERSION,
        WEIGHTS,
        _weights_to_save,
        atomic_write_bytes,
        save_tensors,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fine_version": __version__,
        "architecture": ARCHITECTURE,
        "model": model.config.to_dict(),
        "card": card or {},
    }
    save_tensors(out / WEIGHTS, _weights_to_save(model), {"format": FORMAT})
    atomic_write_bytes(out / CONFIG, (json.dumps(meta, indent=2) + "\n").encode())
    return out


def load_mmim(directory: str | Path) -> MMIM:
    from core.artifact import CONFIG, WEIGHTS, ArtifactError, load_tensors, read_config

    path = Path(directory)
    meta = read_config(path)
    if meta.get("architecture") != ARCHITECTURE:
        raise ArtifactError(
            f"{path / CONFIG}: not an MMIM artifact (architecture {meta.get('architecture')!r})"
        )
    try:
        config = MMIMConfig.from_dict(meta["model"])
    except ConfigError as exc:
        raise ArtifactError(f"{path / CONFIG}: invalid MMIM config: {exc}") from None
    model = build_mmim(config)
    missing = model.load_state_dict(load_tensors(path / WEIGHTS), strict=False).missing_keys
    missing = [k for k in missing if not k.startswith("text_encoder.")]
    if missing:
        raise ArtifactError(f"{path / WEIGHTS}: weights do not match config.json (missing {missing[:3]})")
    return model.eval()
