"""A restricted unpickler for benchmark feature pickles: numpy arrays and plain containers only.

``pickle.load`` runs whatever callable a file names, so a downloaded ``aligned_50.pkl`` could execute
code. :func:`load_pickle` resolves only an allow-list of globals (numpy's array reconstruction, dtypes
and scalars, ``OrderedDict``, ``set``/``frozenset``/``bytearray``/``complex``, and ``_codecs.encode``
that protocol-2 numpy pickles use for raw bytes); any other global refuses the whole file with a
one-line :class:`UnsafePickleError` that names the file and the global.

Allowed constructors are sized by the file: a pickle can call ``bytearray(N)`` or ``ndarray(shape)``
with any number, so a 100-byte file could ask for gigabytes. Those callables are wrapped:
``bytearray`` takes only bytes or a string (never a count), and an array may not be larger than
:data:`MAX_ARRAY_BYTES` nor than a bound proportional to the file (a real array's data is in the file).
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

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
    """The pickle names a global outside the allow-list (it could run code), or asks an allowed
    constructor for far more memory than the file holds."""


MAX_ARRAY_BYTES = 8 << 30  # no benchmark feature array comes near this
SIZE_FACTOR = 64  # an array may be this many times the file's size (its data is in the file)


def _multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1
        return importlib.import_module("numpy.core.multiarray")


class _Sized:
    """The allow-listed constructors that allocate, checked against the file's size."""

    def __init__(self, source: str, file_size: int) -> None:
        self.source = source
        self.limit = min(MAX_ARRAY_BYTES, SIZE_FACTOR * file_size + (1 << 20))

    def _refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"{self.source}: refused to unpickle {what}: far larger than the file could hold "
            "(a crafted file; convert it or check where it came from)"
        )

    def _check_shape(self, shape: Any, dtype: Any, what: str) -> None:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise self._refuse(f"{what} of shape {dims!r}")
        n = int(np.prod(dims, dtype=object)) * np.dtype(dtype).itemsize
        if n > self.limit:
            raise self._refuse(f"{what} of {n} bytes")

    def bytearray(self, *args: Any) -> bytearray:
        if args and not isinstance(args[0], (bytes, str)):  # bytearray(N) allocates N bytes
            raise self._refuse(f"bytearray({type(args[0]).__name__})")
        return bytearray(*args)

    def ndarray(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        self._check_shape(shape, dtype, "ndarray")
        return np.ndarray(shape, dtype, *args, **kwargs)

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype == self.ndarray:
            subtype = np.ndarray
        if subtype is not np.ndarray:
            raise self._refuse(f"an array of type {subtype!r}")
        self._check_shape(shape, np.uint8, "ndarray")
        return _multiarray()._reconstruct(subtype, shape, dtype)

    def scalar(self, dtype: Any, *args: Any) -> Any:
        if isinstance(dtype, np.dtype) and dtype.itemsize > self.limit:
            raise self._refuse(f"a scalar of {dtype.itemsize} bytes")
        return _multiarray().scalar(dtype, *args)


def _is_numpy_dtype_class(module: str, name: str) -> bool:
    # numpy >= 1.25 pickles some dtypes as numpy.dtypes.Float32DType etc.: classes, not functions.
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, source: str, file_size: int = 0) -> None:
        super().__init__(fh, encoding="latin1")
        self.source = source
        self.sized = _Sized(source, file_size)

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol 2
        if (module, name) not in ALLOWED and not _is_numpy_dtype_class(module, name):
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle global '{module}.{name}': only numpy arrays and plain "
                "containers are allowed (the file could run code; convert it or check where it came from)"
            )
        wrapped = {
            ("builtins", "bytearray"): self.sized.bytearray,
            ("numpy", "ndarray"): self.sized.ndarray,
            **{(m, "_reconstruct"): self.sized.reconstruct for m in _NUMPY_CORE},
            **{(m, "scalar"): self.sized.scalar for m in _NUMPY_CORE},
        }.get((module, name))
        if wrapped is not None:
            return wrapped
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def loads(data: bytes, source: str = "<bytes>") -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), source, len(data)).load()
    except UnsafePickleError:
        raise
    except MemoryError:
        raise UnsafePickleError(
            f"{source}: refused to unpickle: it asks for more memory than there is"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_pickle(path: str | Path) -> Any:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    return loads(data, str(path))
