"""A restricted unpickler for benchmark feature pickles: numpy arrays and plain containers only.

``pickle.load`` runs whatever callable a file names, so a downloaded ``aligned_50.pkl`` could execute
code. :func:`load_pickle` resolves only an allow-list of globals (numpy's array reconstruction, dtypes
and scalars, ``OrderedDict``, ``set``/``frozenset``/``bytearray``/``complex``, and ``_codecs.encode``
that protocol-2 numpy pickles use for raw bytes); any other global refuses the whole file with a
one-line :class:`UnsafePickleError` that names the file and the global.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from core.errors import InputError

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {(m, n) for m in _NUMPY_CORE for n in ("_reconstruct", "scalar")}
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("_codecs", "encode"),
        ("codecs", "encode"),
    }
)


class UnsafePickleError(InputError):
    """The pickle names a global outside the allow-list (it could run code)."""


def _is_numpy_dtype_class(module: str, name: str) -> bool:
    # numpy >= 1.25 pickles some dtypes as numpy.dtypes.Float32DType etc.: classes, not functions.
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, source: str) -> None:
        super().__init__(fh, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED and not _is_numpy_dtype_class(module, name):
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle global '{module}.{name}': only numpy arrays and plain "
                "containers are allowed (the file could run code; convert it or check where it came from)"
            )
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def loads(data: bytes, source: str = "<bytes>") -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_pickle(path: str | Path) -> Any:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return loads(data, str(path))
