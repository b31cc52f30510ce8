"""Models by name: ``default``, a local folder, or a Hugging Face id ``hf:org/name[@revision]``.

``hf:`` models are fetched with ``huggingface_hub.snapshot_download`` into ``models/`` of the fine cache
(:mod:`core.paths`) and reused from there; ``HF_HUB_OFFLINE=1`` (or ``FINE_OFFLINE=1``) uses the cache only.
``fine models`` lists the known and cached models; ``fine models push DIR hf:org/name`` publishes one after
checking that it loads.

    fine models
    fine models pull hf:org/name
    fine models push runs/mine/best hf:org/name [--private]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.clihelp import cli_main
from core.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
DEFAULT_ALIAS = "default"
HUB_HINT = "install the Hugging Face client: pip install 'fine-msa[hub]' (huggingface_hub)"
MODEL_FILES = ["config.json", "model.safetensors", "*.onnx", "*.json", "*.md", "README*", "LICENSE*"]

Downloader = Callable[..., str]
Uploader = Callable[[Path, str, bool], str]


@dataclass(frozen=True)
class HubId:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return HF_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(name: str) -> HubId:
    """``hf:org/name[@revision]`` -> HubId; a one-line InputError naming the bad id otherwise."""
    body = name[len(HF_PREFIX) :] if name.startswith(HF_PREFIX) else name
    repo, _, revision = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo):
        raise InputError(f"{name}: not a Hugging Face model id; write hf:ORG/NAME (optionally @REVISION)")
    return HubId(repo, revision or None)


def models_cache() -> Path:
    from core.paths import cache_dir

    return cache_dir("models")


def offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "FINE_OFFLINE")
    )


def _snapshot_download(**kwargs: Any) -> str:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependencyError(HUB_HINT) from None
    return str(snapshot_download(**kwargs))


def fetch(hub: HubId, downloader: Downloader | None = None) -> Path:
    """The local folder of a hub model: from the cache, else downloaded into it (unless offline)."""
    download = downloader or _snapshot_download
    local_only = offline()
    try:
        path = download(
            repo_id=hub.repo_id,
            revision=hub.revision,
            cache_dir=str(models_cache()),
            local_files_only=local_only,
            allow_patterns=MODEL_FILES,
        )
    except MissingDependencyError:
        raise
    except Exception as exc:  # the hub client's many error types; each becomes one line naming the id
        kind = type(exc).__name__
        if local_only or "LocalEntryNotFound" in kind or "Offline" in kind:
            raise InputError(
                f"{hub}: not in the model cache ({models_cache()}) and offline mode is on; "
                f"run 'fine models pull {hub}' with network first"
            ) from None
        if "NotFound" in kind or "Unauthorized" in kind or "GatedRepo" in kind:
            raise InputError(
                f"{hub}: no such model on the hub (or no access); check the id, or log in with 'hf auth login'"
            ) from None
        raise InputError(f"{hub}: download failed ({kind}: {str(exc).splitlines()[0][:200]})") from None
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise InputError(f"{hub}: the repository has no config.json; it is not a fine-msa model")
    return folder


def resolve(model: str | os.PathLike[str] | None, downloader: Downloader | None = None) -> Path:
    """``None`` or ``default`` -> the shipped default model; ``hf:org/name`` -> its cached snapshot; else a
    local path that must exist."""
    from app.assets import DEFAULT_MODEL

    name = None if model is None else os.fspath(model)
    if name is None or name == DEFAULT_ALIAS:
        if not (DEFAULT_MODEL / "config.json").exists():
            given = "no --model given and" if name is None else "--model default:"
            raise InputError(
                f"{given} the default model is not installed at {DEFAULT_MODEL}; pass --model DIR (a model "
                "artifact directory or an .onnx file) or hf:ORG/NAME, or rebuild it with "
                "'fine build-default --data DATA --out app/assets/default_model'"
            )
        return DEFAULT_MODEL
    if name.startswith(HF_PREFIX):
        return fetch(parse_hub_id(name), downloader)
    path = Path(name)
    if not path.exists():
        raise InputError(
            f"{path}: no such model; pass --model DIR (a model artifact or .onnx), hf:ORG/NAME or 'default'"
        )
    return path


# ------------------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "shipped" or "cache"
    card: str


def _card_line(folder: Path) -> str:
    from core.artifact import read_config

    try:
        meta = read_config(folder)
    except InputError as exc:
        return f"(unreadable: {exc})"
    card = meta.get("card") or {}
    name = card.get("name") or meta.get("model", {}).get("name") or "?"
    return str(name)


def cached_models() -> list[ModelEntry]:
    """Every hub model in the cache (``models--ORG--NAME/snapshots/REV``), newest snapshot first."""
    root = models_cache()
    entries = []
    for repo in sorted(root.glob("models--*--*")) if root.is_dir() else []:
        repo_id = repo.name[len("models--") :].replace("--", "/", 1)
        snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for snap in snapshots[:1]:
            entries.append(ModelEntry(HF_PREFIX + repo_id, snap, "cache", _card_line(snap)))
    return entries


def known_models() -> list[ModelEntry]:
    from app.assets import DEFAULT_MODEL

    shipped = []
    if (DEFAULT_MODEL / "config.json").exists():
        shipped.append(ModelEntry(DEFAULT_ALIAS, DEFAULT_MODEL, "shipped", _card_line(DEFAULT_MODEL)))
    return shipped + cached_models()


# ------------------------------------------------------------------------------------------ publishing


def check_artifact(folder: Path) -> None:
    """Refuse to publish what would not load: config.json, model.safetensors, and weights that fit."""
    from core.artifact import load_model

    if not folder.is_dir():
        raise InputError(
            f"{folder}: not a directory; pass a model artifact folder (config.json + model.safetensors)"
        )
    load_model(folder)


def _hub_upload(folder: Path, repo_id: str, private: bool) -> str:
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise MissingDependencyError(HUB_HINT) from None
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        allow_patterns=MODEL_FILES,
        commit_message="fine models push",
    )
    return str(getattr(info, "commit_url", info))


def push(folder: Path, name: str, private: bool = False, uploader: Uploader | None = None) -> str:
    hub = parse_hub_id(name)
    if hub.revision:
        raise InputError(f"{name}: push to hf:ORG/NAME without @revision (the hub makes the commit)")
    check_artifact(folder)
    return (uploader or _hub_upload)(folder, hub.repo_id, private)


# ------------------------------------------------------------------------------------------ CLI

EXAMPLES = """examples:
  fine models                                   list the shipped and cached models
  fine models pull hf:org/name                  download a model into the cache
  fine models push runs/mine/best hf:org/name   publish a trained model (checked first)
  fine score talk.mp4 --out runs/s --model hf:org/name
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fine models",
        description="models by name: 'default', a local folder, or hf:ORG/NAME[@REV] (Hugging Face, cached)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action")
    sub.add_parser("list", help="list the shipped and cached models (the default action)")
    pull = sub.add_parser("pull", help="download hf:ORG/NAME into the cache")
    pull.add_argument("name")
    pu = sub.add_parser("push", help="publish a model folder as hf:ORG/NAME (it must load first)")
    pu.add_argument("folder", type=Path)
    pu.add_argument("name")
    pu.add_argument("--private", action="store_true", help="create the repository as private")
    return p


def main(
    argv: list[str] | None = None, downloader: Downloader | None = None, uploader: Uploader | None = None
) -> int:
    def run(args: argparse.Namespace) -> int:
        if args.action == "pull":
            print(fetch(parse_hub_id(args.name), downloader))
        elif args.action == "push":
            where = push(args.folder, args.name, args.private, uploader)
            print(f"pushed {args.folder} to {parse_hub_id(args.name)}: {where}")
        else:
            entries = known_models()
            print(f"models (cache: {models_cache()})")
            for e in entries:
                print(f"  {e.name:32s} {e.source:7s} {e.card}  {e.path}")
            if not entries:
                print("  none; pass --model DIR or hf:ORG/NAME")
        return 0

    return cli_main("fine models", parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
