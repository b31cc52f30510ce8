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
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import InputError, MissingDependencyError
from export.onnx_export import file_digest, read_metadata

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
TENSORRT_HINT = (
    "TensorRT is not installed: on Jetson use JetPack 6's python3-libnvinfer (TensorRT 10.3); "
    "on a desktop GPU 'pip install tensorrt' (CUDA 12); without it, run the ONNX with onnxruntime"
)


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(TENSORRT_HINT) from None
    return tensorrt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def default_cache_dir() -> Path:
    root = os.environ.get("FINE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "fine" / "engines"


@dataclass(frozen=True)
class EngineOptions:
    """Precision and optimisation profile (min/opt/max of every dynamic axis).

    The batch axis must cover Shapley calls: a runner sends ``8·b`` rows, so ``max_batch=64`` serves
    contributions for up to 8 samples per call (larger calls are split by the runner).
    ``lengths`` overrides the ``(min, opt, max)`` sequence range per modality.
    """

    precision: Precision = "fp16"
    batch: tuple[int, int, int] = (1, 8, 64)
    length: tuple[int, int, int] = (1, 50, 256)
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


def graph_inputs(onnx_path: str | Path) -> list[tuple[str, list[int | str]]]:
    """``(name, dims)`` of the ONNX graph inputs; a dynamic dim is its symbolic name."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    out = []
    for inp in model.graph.input:
        dims: list[int | str] = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        out.append((inp.name, dims))
    return out


def profile_shapes(onnx_path: str | Path, options: EngineOptions) -> dict[str, tuple[tuple[int, ...], ...]]:
    """``name -> (min, opt, max)`` shapes for every graph input, from its dynamic axis names."""
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    for name, dims in graph_inputs(onnx_path):
        lo, opt, hi = [], [], []
        for d in dims:
            if isinstance(d, str):
                r = options.range_for(d)
            else:
                r = (d, d, d)
            lo.append(r[0])
            opt.append(r[1])
            hi.append(r[2])
        shapes[name] = (tuple(lo), tuple(opt), tuple(hi))
    return shapes


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
        from export.runtime.tensorrt_runner import make_int8_calibrator

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
        workdir = cache / f".{key}.work"
        workdir.mkdir(exist_ok=True)
        try:
            plan = build_serialized(onnx_path, options, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(plan)
        tmp.replace(cached)
        sidecar = {
            "onnx": str(onnx_path),
            "onnx_digest": file_digest(onnx_path),
            "tensorrt_version": trt.__version__,
            "gpu": gpu,
            "options": {k: v for k, v in asdict(options).items() if k != "cache_dir"},
            "metadata": read_metadata(onnx_path),
        }
        cached.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    if out is None:
        return cached
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, out)
    shutil.copyfile(cached.with_suffix(".json"), out.with_suffix(".json"))
    return out
