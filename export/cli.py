"""``fine export MODEL --onnx OUT [--tensorrt OUT]``: export a model artifact for deployment.

Writes the ONNX inference graph (checked, simplified, metadata embedded), verifies it against torch on
random inputs of several batch sizes and sequence lengths, and optionally builds a TensorRT engine.
Errors are printed as one line (exit 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from core.clihelp import cli_main, command_parser, from_args

log = logging.getLogger(__name__)

PARITY_ATOL = 1e-4


def _range(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX integers, got {text!r}") from None
    return lo, opt, hi


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "fine export",
        __doc__.splitlines()[0],
        "fine export runs/mosi/best --onnx runs/mosi/model.onnx",
        "fine export runs/mosi/best --onnx runs/mosi/model.onnx --text-encoder outside",
        "fine export runs/mosi/best --tensorrt runs/mosi/model.engine     # on the GPU machine that runs it",
    )
    p.add_argument("model", help="model artifact directory (config.json + model.safetensors)")
    p.add_argument("--onnx", metavar="OUT", help="write the ONNX graph here (default: beside --tensorrt OUT)")
    p.add_argument("--tensorrt", metavar="OUT", help="also build a serialized TensorRT engine here")
    p.add_argument("--text-encoder", choices=["inside", "outside"], default="inside",
                   help="put the text encoder in the graph (token ids in) or outside it (embeddings in; the "
                        "encoder is written as OUT.text_encoder.onnx)")  # fmt: skip
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--no-verify", action="store_true", help="skip the torch vs onnxruntime parity check")
    trt = p.add_argument_group("TensorRT")
    trt.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    trt.add_argument("--batch", type=_range, default=(1, 8, 64), metavar="MIN,OPT,MAX",
                     help="batch profile; Shapley contributions use 8 rows per sample (default 1,8,64)")  # fmt: skip
    trt.add_argument("--length", type=_range, default=(1, 50, 256), metavar="MIN,OPT,MAX",
                     help="sequence length profile for every modality (default 1,50,256)")  # fmt: skip
    trt.add_argument("--calibration", help="INT8 calibration feeds (.npz), TensorRT 10 only")
    trt.add_argument(
        "--cache-dir",
        help="engine cache (default: engines/ in the fine cache, ~/.cache/fine or $FINE_CACHE_DIR)",
    )
    return p


def verify(model: Any, onnx_path: Path, text_encoder_path: Path | None) -> float:
    """Max |Δ| of score/unimodal/contributions, torch vs onnxruntime-cpu, on random batches of 1 and 8."""
    import numpy as np

    from core.batch import ModalityBatch
    from core.config import MODALITIES
    from export.compare import compare_runners
    from export.io import example_feeds, feeds_to_tensors
    from export.onnx_export import vocab_size
    from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from export.runtime.torch_runner import TorchRunner

    ref = TorchRunner(model)  # token ids in; an outside encoder runs in onnxruntime before the graph
    ref.activate()
    vocab = vocab_size(model)
    batches = []
    for i, (b, t) in enumerate([(1, 5), (8, 37)]):
        lengths = {m: t + 3 * j for j, m in enumerate(MODALITIES)}
        feeds = example_feeds(model.config, ref.text_input, b, lengths, vocab_size=min(vocab, 1000), seed=i)
        feeds["presence"] = np.random.default_rng(i).random((b, 3)) > 0.2
        features, masks, presence = feeds_to_tensors(feeds)
        batches.append(ModalityBatch(features, masks, presence))
    with OnnxRuntimeRunner(onnx_path, "cpu", text_encoder_path=text_encoder_path) as runner:
        (result,) = compare_runners(ref, [runner], batches)
    print(f"  parity: {result}")
    return result.worst


def run(args: argparse.Namespace) -> int:
    from core.artifact import load_model, read_config
    from core.errors import InputError
    from export.onnx_export import ExportOptions, export_onnx
    from export.tensorrt_build import EngineOptions, build_engine, import_tensorrt

    if not args.onnx and not args.tensorrt:
        raise InputError("nothing to do: pass --onnx OUT and/or --tensorrt OUT")
    engine_options = None
    if args.tensorrt:  # validate before the (slow) export
        engine_options = from_args(EngineOptions, args, "precision batch length calibration cache_dir")
        import_tensorrt()  # fail fast, before the export, with the install hint
    model = load_model(args.model)
    card = read_config(args.model).get("card")
    onnx_out = Path(args.onnx) if args.onnx else Path(args.tensorrt).with_suffix(".onnx")
    options = ExportOptions(opset=args.opset, text_encoder=args.text_encoder, simplify=not args.no_simplify)
    result = export_onnx(model, onnx_out, options, card=card)
    print(
        f"wrote {result.path} (text input: {result.text_input}, opset {args.opset}, "
        f"{'simplified' if result.simplified else 'not simplified'})"
    )
    if result.text_encoder_path is not None:
        print(f"wrote {result.text_encoder_path} (text encoder)")
    if not args.no_verify:
        worst = verify(model, result.path, result.text_encoder_path)
        if worst > PARITY_ATOL:
            print(
                f"fine export: onnxruntime differs from torch by {worst:.2e} > {PARITY_ATOL}", file=sys.stderr
            )
            return 1
    if engine_options is not None:
        engine = build_engine(result.path, args.tensorrt, engine_options)
        print(f"wrote {engine} (TensorRT, {args.precision})")
    _export_expression_encoder(model, result.path, args.tensorrt, engine_options)
    _copy_text_adapter(Path(args.model), result.path)
    return 0


def _copy_text_adapter(model_dir: Path, onnx_path: Path) -> None:
    """A model whose words use a text adapter (``core.text_adapter``) needs it beside the exported graph:
    the runners merge it into the text encoder."""
    from core.text_adapter import ADAPTER_FILE

    src = model_dir / ADAPTER_FILE
    if not src.is_file():
        return
    dst = onnx_path.with_name(ADAPTER_FILE)
    if dst.resolve() != src.resolve():
        shutil.copyfile(src, dst)
    print(f"wrote {dst} (text adapter)")


def _export_expression_encoder(
    model: Any, onnx_path: Path, engine_out: str | None, engine_options: Any
) -> None:
    """A model whose face features include the expression encoder (vision profile v2) gets the encoder
    beside it: ``expression.onnx`` (and ``expression.engine``), which the runners load for the face path."""
    from core.features.expression import load_encoder
    from core.features.profile import FeatureProfile
    from core.features.vision import GEOMETRY_VERSION
    from export import expression
    from export.runtime import EXPRESSION_ENGINE, EXPRESSION_ONNX

    profile = model.config.feature_profile
    vision = FeatureProfile.from_dict(profile).vision if profile else None
    if vision is None or vision.version == GEOMETRY_VERSION:
        return
    encoder = load_encoder()
    if vision.options.get("expression") != encoder.identity:
        print(
            f"note: the model was trained with expression encoder {vision.options.get('expression')!r}, "
            f"this installation has {encoder.identity!r}: not exported",
            file=sys.stderr,
        )
        return
    path = onnx_path.with_name(EXPRESSION_ONNX)
    err = expression.export_onnx(encoder, path)
    print(f"wrote {path} (expression encoder, max |onnxruntime - torch| {err:.1e})")
    if engine_out is not None:
        engine = Path(engine_out).with_name(EXPRESSION_ENGINE)
        expression.build_engine(path, engine, engine_options.precision)
        print(f"wrote {engine} (expression encoder, TensorRT)")


def main(argv: list[str] | None = None) -> int:
    return cli_main("fine export", parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
