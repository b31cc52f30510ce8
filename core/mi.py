"""Mutual-information estimators (docs/METHOD.md §2): InfoNCE lower bound and NCE-CLUB upper bound.

Both use a *concat critic* ``f(x, y) = w·ReLU(W_x x + W_y y + b) + c``, an MLP on ``[x; y]`` whose first
layer is split so that all ``B×B`` pairs cost one broadcast add instead of ``B²`` matrix products.

- InfoNCE (lower bound, ≤ log B): ``mean_i [f(x_i, y_i) − logsumexp_j f(x_i, y_j)] + log B``.
- NCE-CLUB (upper bound, FactorCL): ``mean f*(joint) − mean f*(all pairs)`` where ``f*`` is a critic
  trained *in its own step* with the InfoNCE objective on detached features (``critic_loss``). In the
  model's step the critic's parameters are not updated; gradients flow only into the features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ConcatCritic(nn.Module):
    """``f(x, y)`` for all pairs: ``scores(x (B, dx), y (B, dy)) -> (B, B)`` with ``[i, j] = f(x_i, y_j)``."""

    def __init__(self, dx: int, dy: int, hidden: int = 512) -> None:
        super().__init__()
        self.fx = nn.Linear(dx, hidden)
        self.fy = nn.Linear(dy, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def scores(self, x: Tensor, y: Tensor, frozen: bool = False) -> Tensor:
        """``frozen=True`` uses detached weights: gradients reach x and y but not the critic."""
        lin = torch.nn.functional.linear

        def w(p: Tensor) -> Tensor:
            return p.detach() if frozen else p

        hx = lin(x, w(self.fx.weight), w(self.fx.bias))
        hy = lin(y, w(self.fy.weight))
        h = torch.relu(hx[:, None, :] + hy[None, :, :])  # (B, B, H)
        return lin(h, w(self.out.weight), w(self.out.bias)).squeeze(-1)


def infonce_from_scores(scores: Tensor) -> Tensor:
    """InfoNCE lower bound (nats) from a ``(B, B)`` score matrix with positives on the diagonal."""
    b = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(b)


def club_from_scores(scores: Tensor, weights: Tensor | None = None) -> Tensor:
    """NCE-CLUB upper bound: mean over positive pairs minus mean over all pairs.

    ``weights (B, B)`` (rows summing to 1) replace the uniform "all pairs" average; the conditional
    estimate uses label-kernel weights so that only label-near pairs act as negatives."""
    if weights is None:
        return scores.diagonal().mean() - scores.mean()
    return scores.diagonal().mean() - (scores * weights).sum(1).mean()


def label_kernel(labels: Tensor, bandwidth: float) -> Tensor:
    """Row-normalised Gaussian kernel on labels ``(B,)``: weights for conditional negatives."""
    d2 = (labels[:, None] - labels[None, :]) ** 2
    w = torch.exp(-0.5 * d2 / bandwidth**2)
    return w / w.sum(1, keepdim=True)


class InfoNCE(nn.Module):
    """Lower bound on I(X; Y), trained jointly with whatever produces x and y (maximise it)."""

    def __init__(self, dx: int, dy: int, hidden: int = 512) -> None:
        super().__init__()
        self.critic = ConcatCritic(dx, dy, hidden)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return infonce_from_scores(self.critic.scores(x, y))


class NCECLUB(nn.Module):
    """Upper bound on I(X; Y) (minimise it). Call ``critic_loss`` in a separate optimiser step."""

    def __init__(self, dx: int, dy: int, hidden: int = 512) -> None:
        super().__init__()
        self.critic = ConcatCritic(dx, dy, hidden)

    def forward(self, x: Tensor, y: Tensor, weights: Tensor | None = None) -> Tensor:
        # The critic is frozen for this term: its parameters are trained by critic_loss only.
        return club_from_scores(self.critic.scores(x, y, frozen=True), weights)

    def critic_loss(self, x: Tensor, y: Tensor, detach_inputs: bool = True) -> Tensor:
        """Negative InfoNCE on detached inputs: fits ``f*`` without touching the encoders.

        ``detach_inputs=False`` lets a caller train something inside the inputs together with the
        critic (the conditional term's label embedding); the caller detaches the rest itself."""
        if detach_inputs:
            x, y = x.detach(), y.detach()
        return -infonce_from_scores(self.critic.scores(x, y))
