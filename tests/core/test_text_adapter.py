"""Text adapters (core/text_adapter.py, training/text_adapter.py): trained on a real tiny BERT, merged into
a fresh copy of it, recorded by digest in the feature profile, found beside the model, refused when
missing, altered or made for another encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from core.errors import InputError  # noqa: E402
from core.features.clip import ExtractorConfig  # noqa: E402
from core.features.profile import FeatureProfile, FeatureProfileError, check_profile  # noqa: E402
from core.features.text import TextFeatureConfig, TextFeatureExtractor  # noqa: E402
from core.text_adapter import (  # noqa: E402
    ADAPTER_FILE,
    AdapterConfig,
    adapter_digest,
    adapter_tensors,
    attach,
    merge_adapter,
    save_adapter,
)

WORDS = ["good", "great", "happy", "love", "fine", "bad", "awful", "sad", "hate", "boring"]
WORDS += ["the", "movie", "was", "is", "and", "not", "very", "plot"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
POSITIVE = ["the movie was good", "great plot", "happy and fine", "love the movie", "very good plot"]
NEGATIVE = ["the movie was bad", "awful plot", "sad and boring", "hate the movie", "very bad plot"]


def _bert(path: Path, hidden: int, seed: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    transformers.BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    cfg = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(seed)
    transformers.BertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bert(tmp_path_factory.mktemp("tiny-bert-adapter"), 24, 0)


def _states(source: Path, text: str, adapter: Path | None = None) -> np.ndarray:
    return (
        TextFeatureExtractor(
            TextFeatureConfig(str(source), adapter=None if adapter is None else str(adapter))
        )
        .encode(text)
        .embeddings
    )


def test_merged_adapter_gives_the_trained_encoder_states(tiny: Path, tmp_path: Path) -> None:
    from core.config import TextEncoderConfig
    from core.text_encoder import load_text_encoder, load_tokenizer

    cfg = TextEncoderConfig(source=str(tiny))
    enc, tok = load_text_encoder(cfg).eval(), load_tokenizer(cfg)
    names = attach(enc.backbone, AdapterConfig(rank=4, alpha=8.0))
    # 2 layers x (query, key, value, attention output, intermediate): the pooler and FFN output are not adapted
    assert len(names) == 10 and not any(n.startswith("pooler") for n in names)
    assert sum(p.requires_grad for p in enc.backbone.parameters()) == 20  # only the A and B matrices
    torch.manual_seed(1)
    for mod in enc.backbone.modules():  # move B away from zero, as training does
        if hasattr(mod, "lora_b"):
            torch.nn.init.normal_(mod.lora_b, std=0.2)
    ids = torch.tensor([tok("the movie was good")["input_ids"]])
    with torch.no_grad():
        adapted = enc(ids, torch.ones_like(ids, dtype=torch.bool))[0].numpy()
    path = tmp_path / ADAPTER_FILE
    digest = save_adapter(adapter_tensors(enc.backbone), AdapterConfig(rank=4, alpha=8.0), str(tiny), path)
    assert digest == adapter_digest(path) and len(digest) == 16
    plain = _states(tiny, "the movie was good")
    merged = _states(tiny, "the movie was good", path)
    assert np.abs(merged - adapted).max() < 1e-5  # merging W += s B A is the same function
    assert np.abs(merged - plain).max() > 0.05  # and the adapter does change the states


def test_profile_records_the_adapter_and_the_model_folder_supplies_it(tiny: Path, tmp_path: Path) -> None:
    from core.config import TextEncoderConfig
    from core.text_encoder import load_text_encoder

    enc = load_text_encoder(TextEncoderConfig(source=str(tiny)))
    attach(enc.backbone, AdapterConfig(rank=2))
    model_dir = tmp_path / "model"
    digest = save_adapter(
        adapter_tensors(enc.backbone), AdapterConfig(rank=2), str(tiny), model_dir / ADAPTER_FILE
    )
    ex = TextFeatureExtractor(TextFeatureConfig(str(tiny), adapter=str(model_dir / ADAPTER_FILE)))
    profile = FeatureProfile(text=ex.profile)
    assert profile.text is not None and profile.text.options["adapter"] == digest
    plain = FeatureProfile(text=TextFeatureExtractor(TextFeatureConfig(str(tiny))).profile)
    assert plain.text is not None and "adapter" not in plain.text.options
    with pytest.raises(FeatureProfileError):  # plain features never pass for adapted ones
        check_profile(profile, plain)

    again = ExtractorConfig.from_profile(profile.to_dict(), model_dir)
    assert again.text.adapter == str(model_dir / ADAPTER_FILE)
    check_profile(profile, FeatureProfile(text=TextFeatureExtractor(again.text).profile))

    with pytest.raises(InputError, match="model directory"):
        ExtractorConfig.from_profile(profile.to_dict())
    gone = ExtractorConfig.from_profile(profile.to_dict(), tmp_path / "elsewhere")
    with pytest.raises(InputError, match=r"text_adapter\.safetensors"):
        TextFeatureExtractor(gone.text).encode("good")

    # a different adapter file in the folder: the digest differs, so the profile check refuses it
    (model_dir / ADAPTER_FILE).write_bytes(b"")
    other = tmp_path / "other" / ADAPTER_FILE
    enc2 = load_text_encoder(TextEncoderConfig(source=str(tiny)))
    attach(enc2.backbone, AdapterConfig(rank=3))
    save_adapter(adapter_tensors(enc2.backbone), AdapterConfig(rank=3), str(tiny), other)
    (model_dir / ADAPTER_FILE).write_bytes(other.read_bytes())
    with pytest.raises(FeatureProfileError):
        check_profile(profile, FeatureProfile(text=TextFeatureExtractor(again.text).profile))


def test_adapter_for_another_encoder_or_not_an_adapter_is_one_line(tiny: Path, tmp_path: Path) -> None:
    from core.config import TextEncoderConfig
    from core.text_encoder import load_text_encoder

    wide = _bert(tmp_path / "wide", 32, 0)
    enc = load_text_encoder(TextEncoderConfig(source=str(wide)))
    attach(enc.backbone, AdapterConfig(rank=2))
    path = tmp_path / ADAPTER_FILE
    save_adapter(adapter_tensors(enc.backbone), AdapterConfig(rank=2), str(wide), path)
    target = load_text_encoder(TextEncoderConfig(source=str(tiny)))
    with pytest.raises(InputError, match="another encoder") as e:
        merge_adapter(target.backbone, path)
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable safetensors"):
        merge_adapter(target.backbone, junk)


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_trained_adapter_separates_the_labels_and_is_cached(
    tiny: Path, tmp_path: Path, monkeypatch, loss: str
) -> None:
    """training.text_adapter on real (tiny) texts, under either loss: the valid error falls below the
    untrained one, the kept epoch is the best, and a second run with the same texts reuses the cached file
    (same digest, no training)."""
    from training import text_adapter as ta

    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    texts = POSITIVE + NEGATIVE
    labels = np.array([2.0] * 5 + [-2.0] * 5)
    data = ta.Texts(texts, labels, ["pos"] * 5 + ["neg"] * 5)
    cfg = ta.AdapterTraining(
        encoder=str(tiny), rank=4, epochs=12, lr=2e-2, batch_size=4, threads=1, loss=loss
    )
    record = ta.train_adapter(cfg, data, data, tmp_path / "a" / ADAPTER_FILE)
    maes = [e["valid_mae"] for e in record["epochs"]]
    assert len(maes) == 12 and min(maes) < 0.8 * maes[0] and f"train_{loss}" in record["epochs"][0]
    # per corpus: the two corpora's MAEs average to the whole's (5 texts each); signs above chance
    for e in record["epochs"]:
        parts = e["valid_by_source"]
        assert [parts[c]["texts"] for c in ("neg", "pos")] == [5, 5]
        assert np.mean([parts[c]["mae"] for c in parts]) == pytest.approx(e["valid_mae"], abs=1e-3)
    best = record["epochs"][int(np.argmin(maes))]["valid_by_source"]
    assert best["pos"]["non0_acc_2"] + best["neg"]["non0_acc_2"] >= 1.4  # chance: 1.0; seen 1.6 and 2.0
    assert record["best_epoch"] == 1 + int(np.argmin(maes))
    assert record["digest"] == adapter_digest(tmp_path / "a" / ADAPTER_FILE)

    def no_training(*a: object, **k: object) -> None:
        raise AssertionError("the cached adapter should have been reused")

    monkeypatch.setattr(ta, "_train", no_training)
    again = ta.train_adapter(cfg, data, data, tmp_path / "b" / ADAPTER_FILE)
    assert again["digest"] == record["digest"]
    assert (tmp_path / "b" / ADAPTER_FILE).read_bytes() == (tmp_path / "a" / ADAPTER_FILE).read_bytes()


def test_frozen_embedding_cache_stays_in_its_folder_for_a_directory_encoder(
    tiny: Path, tmp_path: Path
) -> None:
    """``fine bench text`` / the build's frozen-encoder ridge cache pooled embeddings per encoder: an encoder
    given as a directory (a path with "/") is cached inside the cache folder and read back, not re-encoded."""
    from training.text_bench import embed

    cache = tmp_path / "cache"
    first = embed(str(tiny), POSITIVE + NEGATIVE, cache)
    files = list(cache.iterdir())
    assert first.shape == (10, 24) and len(files) == 1 and files[0].name.startswith(tiny.name)
    np.save(files[0], first * 0 + 7.0)  # the second call returns what the cache holds
    assert float(embed(str(tiny), POSITIVE + NEGATIVE, cache)[0, 0]) == 7.0
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no partial file left


def test_adapter_training_refuses_an_unknown_loss() -> None:
    from core.errors import ConfigError
    from training.text_adapter import AdapterTraining

    with pytest.raises(ConfigError, match=r"text_adapter.loss must be one of \['l1', 'mse'\]"):
        AdapterTraining(loss="huber")
