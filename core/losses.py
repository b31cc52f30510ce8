"""FINE's training objective (docs/METHOD.md §2). Everything here is training-only: never in the export graph.

``L_total = L_MP + λ_up·L_UP + λ_cl·L_CL + λ_aux·L_aux + β_mi·L_MI`` with
``L_MI = −I_sha + I_uni + L_recon + I_str − I_utr`` over the modality pairs (T–A, T–V, A–V).

Two optimisation steps per batch (FactorCL style): ``critic_loss`` fits the NCE-CLUB critics (and the
label encoder of the conditional term) on detached features; ``forward`` is the model's loss, in which
those critics are frozen. InfoNCE critics (``I_sha``, ``I_utr``) are maximised jointly with the model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from core.artifact import load_tensors, save_tensors
from core.config import MODALITIES, FineConfig, LossConfig
from core.mi import NCECLUB, InfoNCE, label_kernel
from core.model import FineOutput
from core.model.layers import MLP
from core.queue import DynamicContrastiveQueue, accon_loss

PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(MODALITIES, 2))
MIN_ROWS = 2  # contrastive estimates need at least two samples
COND_BANDWIDTH = 0.25  # label kernel width (normalised labels in [-1, 1]) for the conditional CLUB


def _key(a: str, b: str) -> str:
    return f"{a}-{b}"


def _club(critics: nn.ModuleDict, key: str) -> NCECLUB:
    critic = critics[key]
    assert isinstance(critic, NCECLUB)
    return critic


@dataclass
class LossOutput:
    total: Tensor
    terms: dict[str, Tensor]  # named, detached scalars for logging (mp, up, cl, aux, mi, sha, uni, ...)


class FineLoss(nn.Module):
    def __init__(self, model_cfg: FineConfig, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or LossConfig()
        lo, hi = model_cfg.label_range
        self.label_mid, self.label_half = (lo + hi) / 2.0, (hi - lo) / 2.0
        self.max_interval = cfg.max_interval or (hi - lo)
        f, d, h, e = model_cfg.ftre.feat_dim, model_cfg.d_model, cfg.critic_hidden, cfg.label_emb_dim
        mi_on = cfg.use_mi and cfg.beta_mi > 0 and model_cfg.ftre.enabled
        self.mi_terms = frozenset(cfg.mi_terms) if mi_on else frozenset()
        pairs = [_key(a, b) for a, b in PAIRS]
        t = self.mi_terms
        self.sha = nn.ModuleDict({k: InfoNCE(f, f, h) for k in pairs}) if "sha" in t else None
        self.uni = nn.ModuleDict({k: NCECLUB(f, f, h) for k in pairs}) if "uni" in t else None
        self.str_ = nn.ModuleDict({k: NCECLUB(f + e, f + e, h) for k in pairs}) if "str" in t else None
        self.str_label = MLP(1, 64, e) if "str" in t else None  # trained with the critics
        self.utr = nn.ModuleDict({m: InfoNCE(f, e, h) for m in MODALITIES}) if "utr" in t else None
        self.utr_label = nn.ModuleDict({m: MLP(1, 64, e) for m in MODALITIES}) if "utr" in t else None
        self.decoder = (
            nn.ModuleDict({m: MLP(2 * f, model_cfg.ftre.hidden, d) for m in MODALITIES})
            if "recon" in t
            else None
        )
        use_cl = cfg.use_cl and cfg.lambda_cl > 0
        self.queue = (
            DynamicContrastiveQueue(len(MODALITIES) * d, cfg.queue_size, cfg.queue_classes)
            if use_cl
            else None
        )
        self.use_up = cfg.use_up and cfg.lambda_up > 0 and model_cfg.unimodal_heads
        self.use_aux = cfg.use_aux and cfg.lambda_aux > 0 and model_cfg.moq.experts > 1

    # -- helpers ---------------------------------------------------------------------------------
    def _norm_label(self, y: Tensor) -> Tensor:
        return ((y - self.label_mid) / self.label_half).unsqueeze(-1)  # (b, 1) in [-1, 1]

    def critic_parameters(self) -> list[nn.Parameter]:
        mods = [self.uni, self.str_, self.str_label]
        return [p for m in mods if m is not None for p in m.parameters()]

    def main_parameters(self) -> list[nn.Parameter]:
        critic = {id(p) for p in self.critic_parameters()}
        return [p for p in self.parameters() if id(p) not in critic]

    # -- the critic step ---------------------------------------------------------------------------
    def critic_loss(self, out: FineOutput, labels: Tensor) -> Tensor:
        """Fit the NCE-CLUB critics on detached features (call with its own optimiser)."""
        total = labels.new_zeros(())
        feats = out.modalities
        for a, b in PAIRS:
            rows = feats[a].present & feats[b].present
            if int(rows.sum()) < MIN_ROWS:
                continue
            k = _key(a, b)
            if self.uni is not None:
                ua, ub = (feats[m].ftre.unique[rows].mean(1) for m in (a, b))  # type: ignore[index]
                total = total + _club(self.uni, k).critic_loss(ua, ub)
            if self.str_ is not None and self.str_label is not None:
                ey = self.str_label(self._norm_label(labels[rows]))
                sa, sb = (feats[m].ftre.shared_tr[rows].mean(1).detach() for m in (a, b))  # type: ignore[index]
                xa, xb = torch.cat([sa, ey], -1), torch.cat([sb, ey], -1)
                total = total + _club(self.str_, k).critic_loss(xa, xb, detach_inputs=False)
        return total

    # -- the model step ----------------------------------------------------------------------------
    def mi_loss(self, out: FineOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        feats = out.modalities
        zero = labels.new_zeros(())
        parts: dict[str, list[Tensor]] = {k: [] for k in ("sha", "uni", "str", "utr", "recon")}
        for a, b in PAIRS:
            rows = feats[a].present & feats[b].present
            if int(rows.sum()) < MIN_ROWS:
                continue
            k = _key(a, b)
            fa, fb = feats[a].ftre, feats[b].ftre
            if self.sha is not None:
                parts["sha"].append(self.sha[k](fa.shared[rows].mean(1), fb.shared[rows].mean(1)))  # type: ignore[index]
            if self.uni is not None:
                parts["uni"].append(self.uni[k](fa.unique[rows].mean(1), fb.unique[rows].mean(1)))  # type: ignore[index]
            if self.str_ is not None and self.str_label is not None:
                with torch.no_grad():
                    ey = self.str_label(self._norm_label(labels[rows]))
                xa = torch.cat([fa.shared_tr[rows].mean(1), ey], -1)  # type: ignore[index]
                xb = torch.cat([fb.shared_tr[rows].mean(1), ey], -1)  # type: ignore[index]
                # I(str_a; str_b | y): negatives weighted towards label-near pairs, so agreement that
                # the shared label alone explains does not count as shared information.
                w = label_kernel(self._norm_label(labels[rows]).squeeze(-1), COND_BANDWIDTH)
                parts["str"].append(self.str_[k](xa, xb, w))
        for m in MODALITIES:
            rows = feats[m].present
            if int(rows.sum()) < MIN_ROWS:
                continue
            fm = feats[m].ftre
            if self.utr is not None and self.utr_label is not None:
                ey = self.utr_label[m](self._norm_label(labels[rows]))
                parts["utr"].append(self.utr[m](fm.unique_tr[rows].mean(1), ey))  # type: ignore[index]
            if self.decoder is not None:
                recon = self.decoder[m](torch.cat([fm.shared[rows], fm.unique[rows]], -1))  # type: ignore[index]
                parts["recon"].append(nn.functional.mse_loss(recon, feats[m].x_hat[rows].detach()))
        mean = {k: torch.stack(v).mean() if v else zero for k, v in parts.items()}
        total = -mean["sha"] + mean["uni"] + mean["recon"] + mean["str"] - mean["utr"]
        return total, mean

    def forward(self, out: FineOutput, labels: Tensor, part_labels: Tensor | None = None) -> LossOutput:
        """``part_labels`` (b, 3), NaN where absent: a modality's own label (cross-corpus pairs), which
        its unimodal head learns instead of the sample's mean label."""
        c = self.cfg
        labels = labels.to(out.score.dtype)
        terms: dict[str, Tensor] = {}
        total = terms["mp"] = nn.functional.mse_loss(out.score, labels)
        if self.use_up and out.unimodal is not None:
            present = torch.stack([out.modalities[m].present for m in MODALITIES], dim=1)  # (b, 3)
            target = labels[:, None].expand_as(out.unimodal)
            if part_labels is not None:
                part = part_labels.to(target)
                target = torch.where(torch.isfinite(part), part, target)
            err = (out.unimodal - target) ** 2
            terms["up"] = (err * present).sum() / present.sum().clamp_min(1)
            total = total + c.lambda_up * terms["up"]
        if self.use_aux:
            aux = []
            for m in MODALITIES:
                rows = out.modalities[m].present
                if int(rows.sum()) >= 1:
                    g = out.modalities[m].gates[rows].mean(0)  # batch-mean gate (E,)
                    aux.append(g.var(unbiased=False) / g.mean().pow(2).clamp_min(1e-8))
            terms["aux"] = torch.stack(aux).mean() if aux else labels.new_zeros(())
            total = total + c.lambda_aux * terms["aux"]
        if self.queue is not None:
            bank, bank_y = self.queue.contents()
            terms["cl"] = accon_loss(
                out.fused, labels, bank, bank_y, self.queue.num_classes, c.temperature, self.max_interval
            )
            total = total + c.lambda_cl * terms["cl"]
        if self.mi_terms:
            mi, parts = self.mi_loss(out, labels)
            terms["mi"] = mi
            terms.update({k: v for k, v in parts.items() if k in self.mi_terms})
            total = total + c.beta_mi * mi
        return LossOutput(total=total, terms={k: v.detach() for k, v in terms.items()})

    @torch.no_grad()
    def update_queue(self, out: FineOutput, labels: Tensor) -> None:
        if self.queue is not None:
            self.queue.enqueue(out.fused, labels)

    # -- persistence (safetensors; used by the trainer for resume and by tests) --------------------
    def save(self, path: str | Path) -> None:
        save_tensors(Path(path), dict(self.state_dict()), {"format": "fine-loss"})

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_tensors(Path(path)))
