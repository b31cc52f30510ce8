"""Acceptance 1: MI estimators against correlated Gaussians with known MI."""

from __future__ import annotations

import math

import pytest
import torch

from core.mi import NCECLUB, InfoNCE

BATCH = 128
CASES = [(2, 0.5), (2, 0.8), (4, 0.5), (4, 0.8), (6, 0.8)]


def gaussian_mi(rho: float, dim: int) -> float:
    """True MI (nats) of ``dim`` independent pairs of standard normals with correlation ``rho``."""
    return -0.5 * dim * math.log(1.0 - rho * rho)


def sample_correlated_gaussians(
    n: int, dim: int, rho: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, dim, generator=generator)
    eps = torch.randn(n, dim, generator=generator)
    return x, rho * x + math.sqrt(1.0 - rho * rho) * eps


def fit(dim: int, rho: float, steps: int = 400, seed: int = 0) -> tuple[float, float]:
    """Fit an InfoNCE critic and an NCE-CLUB critic; return their estimates on fresh samples."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    nce, club = InfoNCE(dim, dim, hidden=64), NCECLUB(dim, dim, hidden=64)
    opt = torch.optim.Adam([*nce.parameters(), *club.parameters()], lr=2e-3)
    for _ in range(steps):
        x, y = sample_correlated_gaussians(BATCH, dim, rho, g)
        loss = -nce(x, y) + club.critic_loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        est = [
            (float(nce(x, y)), float(club(x, y)))
            for x, y in (sample_correlated_gaussians(BATCH, dim, rho, g) for _ in range(20))
        ]
    return sum(e[0] for e in est) / len(est), sum(e[1] for e in est) / len(est)


@pytest.fixture(scope="module")
def estimates() -> dict[tuple[int, float], tuple[float, float]]:
    torch.set_num_threads(2)
    return {case: fit(*case) for case in CASES}


def test_infonce_is_a_lower_bound_that_tracks_true_mi(estimates):
    log_b = math.log(BATCH)
    for (dim, rho), (nce, _) in estimates.items():
        true = gaussian_mi(rho, dim)
        assert nce <= min(true, log_b) + 0.05, (dim, rho, nce, true)
        if true < 0.7 * log_b:
            assert abs(nce - true) <= 0.2 * true, f"d={dim} rho={rho}: InfoNCE {nce:.3f} vs true {true:.3f}"


def test_nce_club_is_an_upper_bound(estimates):
    for (dim, rho), (_, club) in estimates.items():
        true = gaussian_mi(rho, dim)
        assert club >= true - 0.05, f"d={dim} rho={rho}: CLUB {club:.3f} below true {true:.3f}"


def test_both_estimates_increase_with_correlation(estimates):
    for dim in (2, 4):
        lo, hi = estimates[(dim, 0.5)], estimates[(dim, 0.8)]
        assert hi[0] > lo[0] + 0.2 and hi[1] > lo[1] + 0.2, (dim, lo, hi)
