"""Models by name against a local fake hub: no network. The hub client (huggingface_hub) runs for real on a
cache laid out as the hub lays it out; pushing goes to a local folder standing in for the hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app import models
from app.assets import DEFAULT_MODEL, resolve_model
from core.errors import InputError
from tests.app.conftest import make_tiny_model

pytest.importorskip("huggingface_hub")


@pytest.fixture()
def fine_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the real client, never the network
    return tmp_path / "cache"


def lay_in_hub_cache(cache: Path, repo_id: str, folder: Path, revision: str = "a" * 40) -> Path:
    """What snapshot_download leaves behind: models--ORG--NAME/{refs/main, snapshots/REV/...}."""
    repo = cache / "models" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    shutil.copytree(folder, snap)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snap


def fake_hub_uploader(cache: Path, pushed: list[tuple[str, bool]]) -> models.Uploader:
    def upload(folder: Path, repo_id: str, private: bool) -> str:
        pushed.append((repo_id, private))
        lay_in_hub_cache(cache, repo_id, folder, revision="b" * 40)
        return f"local-hub/{repo_id}"

    return upload


def test_default_alias_and_local_folders(fine_cache: Path, tmp_path: Path) -> None:
    assert resolve_model(None) == DEFAULT_MODEL
    assert resolve_model("default") == DEFAULT_MODEL
    assert resolve_model(str(tmp_path)) == tmp_path
    with pytest.raises(InputError, match=r"nope: no such model; pass --model DIR .*hf:ORG/NAME"):
        resolve_model("nope")


def test_hf_id_resolves_from_the_cache_offline(fine_cache: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    snap = lay_in_hub_cache(fine_cache, "someone/fine-tiny", model)
    got = resolve_model("hf:someone/fine-tiny")
    assert got == snap and (got / "model.safetensors").is_file()
    assert resolve_model(f"hf:someone/fine-tiny@{'a' * 40}") == snap
    from core.artifact import load_model

    assert load_model(got).num_parameters() == load_model(model).num_parameters()


def test_hf_id_not_cached_offline_is_one_line(fine_cache: Path) -> None:
    with pytest.raises(InputError) as err:
        resolve_model("hf:someone/missing")
    msg = str(err.value)
    assert "\n" not in msg and "hf:someone/missing" in msg and "offline" in msg and "fine models pull" in msg


@pytest.mark.parametrize("bad", ["hf:", "hf:justname", "hf:a/b/c", "hf:/x", "hf:a b/c"])
def test_bad_hf_ids_are_named(bad: str) -> None:
    with pytest.raises(InputError, match="not a Hugging Face model id; write hf:ORG/NAME"):
        models.parse_hub_id(bad)


def test_downloader_gets_the_fine_cache_and_offline_flag(fine_cache: Path, tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    calls: list[dict[str, object]] = []

    def downloader(**kw: object) -> str:
        calls.append(kw)
        return str(model)

    assert models.resolve("hf:org/name@v1", downloader) == model
    assert calls[0]["repo_id"] == "org/name" and calls[0]["revision"] == "v1"
    assert calls[0]["cache_dir"] == str(fine_cache / "models") and calls[0]["local_files_only"] is True


def test_fine_models_lists_shipped_and_cached(fine_cache: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    lay_in_hub_cache(fine_cache, "someone/fine-tiny", make_tiny_model(tmp_path / "tiny"))
    assert models.main([]) == 0
    out = capsys.readouterr().out
    assert str(fine_cache / "models") in out
    assert "default" in out and "shipped" in out and "fine-default-live" in out
    assert "hf:someone/fine-tiny" in out and "tiny-random" in out


def test_push_checks_the_artifact_then_round_trips(fine_cache: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pushed: list[tuple[str, bool]] = []
    upload = fake_hub_uploader(fine_cache, pushed)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    assert models.main(["push", str(broken), "hf:me/broken"], uploader=upload) == 2
    assert "not a FINE model config" in capsys.readouterr().err and not pushed

    model = make_tiny_model(tmp_path / "tiny")
    assert models.main(["push", str(model), "hf:me/tiny", "--private"], uploader=upload) == 0
    assert pushed == [("me/tiny", True)]
    assert "pushed" in capsys.readouterr().out
    assert (resolve_model("hf:me/tiny") / "config.json").read_bytes() == (model / "config.json").read_bytes()


def test_fine_models_help_ends_with_examples(capsys) -> None:  # type: ignore[no-untyped-def]
    assert models.main(["--help"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].strip().startswith("fine score")


def test_one_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.paths import cache_dir
    from export.tensorrt_build import default_cache_dir

    monkeypatch.delenv("FINE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs honours it on Linux
    assert cache_dir("models") == tmp_path / "xdg" / "fine" / "models"
    assert default_cache_dir() == tmp_path / "xdg" / "fine" / "engines"
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "mine"))
    assert models.models_cache() == tmp_path / "mine" / "models"
