"""TensorRT engines from the exported ONNX: optimisation profiles, FP16/INT8, a cache keyed by version.

Works with TensorRT 10.x (JetPack 6 ships 10.3) and 11.x:

- **10.x** (weakly typed): FP16 is the builder flag ``BuilderFlag.FP16`` on the FP32 graph; INT8 adds
  ``BuilderFlag.INT8`` and an entropy calibrator over user-supplied feature batches.
- **11.x** removed the precision builder flags; networks are always strongly typed, so FP16 means an
  FP16 ONNX: we cast the graph (``nvidia-modelopt`` AutoCast when installed, else
  the built-in :mod:`export.fp16` caster; inputs and outputs stay FP32/bool/int64) and build that. INT8 there needs an
  explicitly quantised (Q/DQ) ONNX, which this module does not produce.

Everything up to ``import tensorrt`` (options, profile shapes, FP16 casting, cache keys) runs and is
tested on machines without TensorRT. Engines are cached under ``cache_dir`` by ONNX digest, TensorRT
version, GPU (name + compute capability), precision and profile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import InputError, MissingDependencyError
from core.fileio import atomic_write_bytes
from export.metadata import file_digest, read_metadata
from export.runtime.profiles import DEFAULT_BATCH, DEFAULT_LENGTH, profile_shapes
from export.runtime.tensorrt_runner import import_tensorrt

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def default_cache_dir() -> Path:
    from core.paths import cache_dir

    return cache_dir("engines")


@dataclass(frozen=True)
class EngineOptions:
    """Precision and optimisation profile (min/opt/max of every dynamic axis).

    The batch axis must cover Shapley calls: a runner sends ``8·b`` rows, so ``max_batch=64`` serves
    contributions for up to 8 samples per call (larger calls are split by the runner).
    ``lengths`` overrides the ``(min, opt, max)`` sequence range per modality.
    """

    precision: Precision = "fp16"
    batch: tuple[int, int, int] = DEFAULT_BATCH
    length: tuple[int, int, int] = DEFAULT_LENGTH
    lengths: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    workspace_mib: int = 2048
    # INT8 (TensorRT 10 only): .npz of graph feeds, name -> (n_batches, *opt shape); TensorRT calibrates
    # at the profile's opt shapes, so every batch must have them.
    calibration: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise InputError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        for name, rng in [("batch", self.batch), ("length", self.length), *self.lengths.items()]:
            if len(rng) != 3 or not 1 <= rng[0] <= rng[1] <= rng[2]:
                raise InputError(
                    f"{name} range must be (min, opt, max) with 1 <= min <= opt <= max, got {rng}"
                )
        unknown = set(self.lengths) - {"text", "audio", "vision"}
        if unknown:
            raise InputError(f"lengths has unknown modalities {sorted(unknown)}")
        if self.workspace_mib < 64:
            raise InputError(f"workspace_mib must be >= 64, got {self.workspace_mib}")
        if self.precision == "int8" and not self.calibration:
            raise InputError("INT8 needs calibration data: pass calibration=FEEDS.npz (graph input names)")

    def range_for(self, axis: str) -> tuple[int, int, int]:
        if axis == "batch":
            return self.batch
        modality = axis.removeprefix("t_")
        return tuple(self.lengths.get(modality, self.length))  # type: ignore[return-value]


def cast_onnx_fp16(onnx_path: str | Path, out: str | Path) -> Path:
    """Write an FP16 copy of the graph with FP32/bool/int64 inputs and outputs (TensorRT 11 FP16).

    Uses NVIDIA ModelOpt AutoCast when it is installed (TensorRT 11's documented path), else the
    built-in caster :func:`export.fp16.cast_file_fp16` (FP32 islands for normalisation, softmax and
    position codes).
    """
    try:
        import onnx
        from modelopt.onnx.autocast import convert_to_mixed_precision  # type: ignore[import-not-found]
    except ImportError:
        from export.fp16 import cast_file_fp16

        log.info("casting to FP16 with the built-in caster (nvidia-modelopt not installed)")
        return cast_file_fp16(onnx_path, out)
    model = convert_to_mixed_precision(
        onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True
    )
    onnx.save(model, str(out))
    log.info("cast to FP16 with ModelOpt AutoCast")
    return Path(out)


def gpu_id() -> str:
    """``<gpu name>-sm<major><minor>`` of CUDA device 0 (via torch), for the engine cache key."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(
            "building a TensorRT engine needs a CUDA GPU (torch.cuda is unavailable)"
        )
    name = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(0)).strip("-").lower()
    major, minor = torch.cuda.get_device_capability(0)
    return f"{name}-sm{major}{minor}"


def cache_key(onnx_path: str | Path, trt_version: str, gpu: str, options: EngineOptions) -> str:
    profile = json.dumps({k: v for k, v in asdict(options).items() if k != "cache_dir"}, sort_keys=True)
    pdigest = hashlib.sha256(profile.encode()).hexdigest()[:8]
    return f"{Path(onnx_path).stem}-{file_digest(onnx_path)}-trt{trt_version}-{gpu}-{options.precision}-{pdigest}"


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def _network(trt: Any, builder: Any, strongly_typed: bool) -> Any:
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # ignored (always on) in 11
    return builder.create_network(flags)


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    return parser


def build_serialized(onnx_path: str | Path, options: EngineOptions, workdir: Path) -> bytes:
    """Build and serialise an engine (needs tensorrt and a GPU). Returns the plan bytes."""
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    onnx_path = Path(onnx_path)
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16") and major < 11
    graph = onnx_path
    if options.precision == "fp16" and not weak_fp16:
        graph = cast_onnx_fp16(onnx_path, workdir / f"{onnx_path.stem}.fp16.onnx")
    if options.precision == "int8" and (major >= 11 or not hasattr(trt.BuilderFlag, "INT8")):
        raise InputError(
            f"INT8 on TensorRT {trt.__version__} needs an explicitly quantised (Q/DQ) ONNX "
            "(e.g. nvidia-modelopt); use --precision fp16"
        )
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = _network(trt, builder, strongly_typed=not weak_fp16)
    parser = _parse(trt, network, logger, graph)  # noqa: F841  (the parser must outlive the build)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if weak_fp16 and options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(onnx_path, options).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_int8_calibrator(
            trt, Path(options.calibration or ""), workdir / "int8.cache"
        )
        config.set_calibration_profile(profile)
    log.info("building TensorRT %s engine (%s) from %s", trt.__version__, options.precision, graph.name)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise InputError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    return bytes(plan)


def build_engine(
    onnx_path: str | Path, out: str | Path | None = None, options: EngineOptions | None = None
) -> Path:
    """Build (or reuse from the cache) an engine for ``onnx_path``; copy it to ``out`` if given.

    Beside every engine a ``.json`` sidecar records the ONNX metadata, TensorRT version, GPU,
    precision and profile, which :class:`~export.runtime.tensorrt_runner.TensorRTRunner` reads.
    """
    options = options or EngineOptions()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path}: no such ONNX file")
    trt = import_tensorrt()
    gpu = gpu_id()
    cache = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(onnx_path, trt.__version__, gpu, options)
    cached = cache / f"{key}.engine"
    if cached.is_file():
        log.info("reusing cached engine %s", cached)
    else:
        # a work folder and temp files of its own: two processes building the same engine must not share them
        workdir = Path(tempfile.mkdtemp(dir=cache, prefix=f".{key}.", suffix=".work"))
        try:
            plan = build_serialized(onnx_path, options, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        atomic_write_bytes(cached, plan)
        sidecar = {
            "onnx": str(onnx_path),
            "onnx_digest": file_digest(onnx_path),
            "tensorrt_version": trt.__version__,
            "gpu": gpu,
            "options": {k: v for k, v in asdict(options).items() if k != "cache_dir"},
            "metadata": read_metadata(onnx_path),
        }
        atomic_write_bytes(cached.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
    if out is None:
        return cached
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    shutil.copyfile(cached.with_suffix(".json"), out.with_suffix(".json"))
    return out


def make_int8_calibrator(trt: Any, feeds_npz: Path, cache_file: Path) -> Any:
    """An entropy calibrator (TensorRT 10.x) over the batches in ``feeds_npz``.

    The file holds graph feeds with a leading chunk axis: ``name -> (n_batches, b, ...)``.
    """
    import torch

    if not feeds_npz.is_file():
        raise InputError(f"{feeds_npz}: calibration file not found (an .npz of graph feeds)")
    data = dict(np.load(feeds_npz))
    n = len(next(iter(data.values())))

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.buffers: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return int(data["presence"].shape[1])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= n:
                return None
            self.buffers = {k: torch.from_numpy(data[k][self.index]).cuda() for k in names}
            self.index += 1
            return [int(self.buffers[k].data_ptr()) for k in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.write_bytes(bytes(cache))

    return _Calibrator()
