"""Shared fixtures. Real data lives in ``../shared/data`` beside the checkout; tests that need it skip
cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

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
