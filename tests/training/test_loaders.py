"""Loaders: restricted unpickler, MMSA and MISA pickles, label CSVs, and their one-line errors."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from training import datasets
from training.safe_pickle import UnsafePickleError, load_pickle


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(pickle.dumps({"train": {"audio": _Evil(str(marker))}}))
    with pytest.raises(
        UnsafePickleError, match=r"aligned_50\.pkl: refused to unpickle global '(posix|os)\.system'"
    ):
        load_pickle(path)
    assert not marker.exists()
    # the same through the data registry: a one-line InputError
    with pytest.raises(InputError, match="refused"):
        datasets.load(f"mmsa:{path}")


def test_plain_numpy_pickle_loads(tmp_path: Path):
    path = tmp_path / "ok.pkl"
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, (2.5, "x")], "c": np.float64(3.0)}
    for protocol in (2, 4):
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        got = load_pickle(path)
        np.testing.assert_array_equal(got["a"], data["a"])
        assert got["b"] == [1, (2.5, "x")] and float(got["c"]) == 3.0


def _mmsa(n: int = 6, t: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    split = {
        "id": [f"vid{i // 2}$_${i}" for i in range(n)],
        "raw_text": [f"text {i}" for i in range(n)],
        "text": rng.normal(size=(n, t, 12)).astype(np.float32),
        "text_bert": np.stack([np.ones((n, t)), (np.arange(t)[None] < 3).repeat(n, 0), np.zeros((n, t))], 1),
        "audio": rng.normal(size=(n, t, 5)).astype(np.float32),
        "vision": rng.normal(size=(n, t, 7)).astype(np.float32),
        "audio_lengths": np.array([5, 4, 3, 2, 1, 5]),
        "vision_lengths": np.array([5, 5, 5, 0, 5, 5]),
        "regression_labels": np.linspace(-3, 3, n).astype(np.float32),
    }
    return {
        k: {kk: (vv.copy() if isinstance(vv, np.ndarray) else list(vv)) for kk, vv in split.items()}
        for k in ("train", "valid", "test")
    }


def test_mmsa_dims_lengths_and_nan_cleaning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    data = _mmsa()
    data["train"]["audio"][0, 0, :3] = np.nan
    data["train"]["audio"][1, 0, 0] = -np.inf
    path = tmp_path / "unaligned_50.pkl"
    path.write_bytes(pickle.dumps(data))
    with caplog.at_level(logging.WARNING):
        splits = datasets.load(f"mmsa:{path}")
    assert splits["train"].feature_dims == {"text": 12, "audio": 5, "vision": 7}
    s0, s1, s3 = splits["train"].samples[0], splits["train"].samples[1], splits["train"].samples[3]
    assert s0.features["audio"].shape == (5, 5) and s1.features["audio"].shape == (4, 5)
    assert s0.features["text"].shape == (3, 12)  # text mask from text_bert row 1
    assert s3.features["vision"] is None  # length 0 -> absent
    assert np.isfinite(s0.features["audio"]).all() and s0.features["audio"][0, 0] == 0.0
    assert "replaced 4 NaN/inf values in 'audio'" in caplog.text
    assert s0.group == "vid0" and s0.text == "text 0"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["valid"].pop("vision"), r"valid: missing key 'vision'"),
        (
            lambda d: d["test"]["regression_labels"].__setitem__(2, 3.5),
            r"test: field 'regression_labels' row 2: label 3.5 is outside",
        ),
        (
            lambda d: d["train"]["regression_labels"].__setitem__(0, np.nan),
            r"train: field 'regression_labels' row 0: label is nan",
        ),
        (lambda d: d["train"]["audio_lengths"].__setitem__(1, 9), r"train: field 'audio_lengths' row 1 is 9"),
        (
            lambda d: d["train"].__setitem__("audio", d["train"]["audio"][:4]),
            r"train: field 'audio' has 4 rows but regression_labels has 6",
        ),
        (lambda d: d.pop("test"), r"missing split key\(s\) \['test'\]"),
    ],
)
def test_mmsa_bad_data_names_file_and_field(tmp_path: Path, mutate, message):
    data = _mmsa()
    mutate(data)
    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(InputError, match=message) as info:
        datasets.load(f"mmsa:{path}")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _misa_item(n_words: int, label: float, sid: str, d_v: int = 47, d_a: int = 74):
    words = [f"w{i}" for i in range(n_words)]
    return (
        (
            np.arange(n_words),
            np.zeros((n_words, d_v), np.float32),
            np.ones((n_words, d_a), np.float32),
            words,
        ),
        np.array([[label]], np.float32),
        sid,
    )


def test_misa_errors(tmp_path: Path):
    path = tmp_path / "dev.pkl"
    path.write_bytes(pickle.dumps([_misa_item(3, 1.0, "a[0]"), _misa_item(4, 9.0, "a[1]")]))
    with pytest.raises(InputError, match=r"dev\.pkl: item 1: field 'label': label 9.0 is outside"):
        datasets.load(f"misa:{path}")
    bad = list(_misa_item(3, 1.0, "a[0]"))
    bad[0] = (bad[0][0], bad[0][1][:2], bad[0][2], bad[0][3])
    path.write_bytes(pickle.dumps([tuple(bad)]))
    with pytest.raises(
        InputError, match=r"item 0: field lengths are ragged: 3 words, visual 2 rows, acoustic 3 rows"
    ):
        datasets.load(f"misa:{path}")


def test_label_csv_errors(tmp_path: Path):
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\nv,1,GOOD,1.0,train\nv,2,BAD,-4,test\n")
    with pytest.raises(InputError, match=r"label\.csv: row 3: field 'label' = -4.0 is outside \[-3.0, 3.0\]"):
        datasets.load(f"csv:{path}")
    path.write_text("video_id,clip_id,label,mode\nv,1,1.0,train\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['text'\]"):
        datasets.load(f"csv:{path}")


# -- the real data ------------------------------------------------------------------------------------


def test_real_mosi_label_csv(shared_data: Path):
    splits = datasets.load(f"csv:{shared_data / 'MOSI' / 'label.csv'}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 1284, "valid": 229, "test": 686}
    s = splits["test"].samples[0]
    assert s.text and s.features["audio"] is None and s.features["vision"] is None
    assert len({x.group for x in splits["train"].samples} & {x.group for x in splits["test"].samples}) == 0


def test_real_misa_dev(shared_data: Path):
    splits = datasets.load(f"misa:{shared_data / 'MOSI' / 'misa_dev.pkl'}")
    ds = splits["valid"]
    assert len(ds) == 229 and ds.feature_dims["audio"] == 74 and ds.feature_dims["vision"] == 47
    assert len({s.group for s in ds.samples}) == 10
    s = ds.samples[0]
    assert s.id == "WKA5OygbEKI[0]" and s.label == pytest.approx(1.8)
    assert s.features["audio"].shape[0] == s.features["vision"].shape[0] == len(s.text.split())


def test_real_meld(shared_data: Path):
    splits = datasets.load(f"meld:{shared_data / 'MELD'}")
    assert len(splits["train"]) + len(splits["valid"]) == 9989 and len(splits["test"]) == 1109
    assert splits["test"].label_range == (-1.0, 1.0)
    labels = splits["test"].labels()
    assert (labels == 1).sum() == 233 and (labels == 0).sum() == 470 and (labels == -1).sum() == 406


def test_a_tiny_pickle_cannot_ask_for_gigabytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``bytearray(N)`` is allow-listed (numpy pickles use bytearray(bytes)); a 40-byte file calling it
    with 6e9 took 6.5 GB. Refused in well under a second, one line, through the CLI too."""
    import time

    from app.cli import main as fine

    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(b"cbuiltins\nbytearray\n(I6000000000\ntR.")
    t0 = time.perf_counter()
    with pytest.raises(UnsafePickleError, match=r"aligned_50\.pkl: refused to unpickle bytearray\(int\)"):
        load_pickle(path)
    assert time.perf_counter() - t0 < 1.0
    path.write_bytes(  # numpy's own reconstruct, asked for a 10 GB array
        b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I100000\nI100000\ntc_codecs\nencode\n"
        b"(Vb\nVlatin1\ntRtR."
    )
    with pytest.raises(UnsafePickleError, match=r"ndarray of 10000000000 bytes"):
        load_pickle(path)
    path.write_bytes(b"cbuiltins\nbytearray\n(I6000000000\ntR.")
    t0 = time.perf_counter()
    assert fine(["train", "--data", f"mmsa:{path}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - t0 < 1.0
    assert err.count("\n") == 1 and "refused to unpickle bytearray(int)" in err and "Traceback" not in err
    path.write_bytes(pickle.dumps({"x": bytearray(b"ok"), "a": np.arange(3)}, protocol=2))
    got = load_pickle(path)  # bytearray(bytes) and protocol 2 still load
    assert got["x"] == b"ok" and got["a"].tolist() == [0, 1, 2]
