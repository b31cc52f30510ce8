"""Shared fixtures. Real data lives in ``../shared/data`` beside the checkout; tests that need it skip
cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads made small
# torch calls up to 100x slower. Must be set before torch initialises OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def samples_dir(shared_data: Path) -> Path:
    path = shared_data / "samples"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
