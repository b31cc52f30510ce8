"""Small building blocks shared by the model and the training-only modules."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """``Linear -> GELU -> (Dropout) -> Linear`` with optional extra hidden layers."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [d_in] + [d_hidden] * (layers - 1) + [d_out]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            mods.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                mods.append(nn.GELU())
                if dropout > 0:
                    mods.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over dim 1 of ``x (b, t, d)`` where ``mask (b, t)`` is True. Rows with no valid step give 0."""
    w = mask.to(x.dtype).unsqueeze(-1)  # (b, t, 1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def sinusoidal_positions(t: int, d: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(t, d)`` fixed sinusoidal position codes, computed for any length (export friendly)."""
    pos = torch.arange(t, device=device, dtype=torch.float32).unsqueeze(1)
    half = d // 2
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / half))
    ang = pos * freq.unsqueeze(0)  # (t, half)
    pe = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    if pe.shape[1] < d:
        pe = torch.cat([pe, torch.zeros(t, d - pe.shape[1], device=device)], dim=1)
    return pe.to(dtype)


class ExpertLinear(nn.Module):
    """E independent linear maps applied at once, expert-first layout: ``(E, b, n, d_in) -> (E, b, n, d_out)``."""

    def __init__(self, experts: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(experts, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(experts, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        e, d, d_out = self.weight.shape
        y = torch.baddbmm(self.bias.unsqueeze(1), x.reshape(e, -1, d), self.weight)  # one batched GEMM
        return y.view(e, -1, x.shape[2], d_out)


class ExpertLayerNorm(nn.Module):
    """LayerNorm with a separate affine transform per expert, for ``(E, b, n, d)``."""

    def __init__(self, experts: int, d: int) -> None:
        super().__init__()
        self.d = d
        self.weight = nn.Parameter(torch.ones(experts, d))
        self.bias = nn.Parameter(torch.zeros(experts, d))

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.layer_norm(x, (self.d,))
        return y * self.weight[:, None, None, :] + self.bias[:, None, None, :]


def fold_norm(norm: ExpertLayerNorm, lin: ExpertLinear, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Weights ``(E, d, d_out)`` and bias ``(E, 1, d_out)`` of ``scale · lin(norm(·))`` applied to the
    affine-free LayerNorm output: ``(LN(x)·γ + β) W + c = LN(x) (γ ⊙ W) + (β W + c)``."""
    weight = norm.weight.unsqueeze(-1) * lin.weight
    bias = torch.baddbmm(lin.bias.unsqueeze(1), norm.bias.unsqueeze(1), lin.weight)
    if scale != 1.0:
        weight, bias = weight * scale, bias * scale
    return weight, bias
