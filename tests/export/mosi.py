"""A minimal, safe reader of the MISA/MMIM MOSI pickle for tests (the real loader belongs to training).

The file is a list of ``((words, visual, acoustic, actual_words), label, segment_id)``. It is read with a
restricted unpickler that can only rebuild numpy arrays and builtin containers: anything else in the
stream (a callable, a class) is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def load_misa(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        data = _ArraysOnly(fh).load()
    out = []
    for (_, visual, acoustic, words), label, segment in data[:limit]:
        out.append(
            {
                "id": str(segment),
                "words": [str(w) for w in words],
                "audio": np.asarray(acoustic, dtype=np.float32),
                "vision": np.asarray(visual, dtype=np.float32),
                "label": float(np.asarray(label).reshape(-1)[0]),
            }
        )
    return out
