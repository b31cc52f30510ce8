"""One runner lifecycle for every backend (Polygraphy-style): ``activate -> infer* -> close``.

A backend implements ``_activate``, ``_run(feeds) -> (score, unimodal)`` and ``_close``; the base class
turns a :class:`~core.batch.ModalityBatch` into feeds, runs the 8 presence subsets in one call when
contributions are requested, and combines them with :mod:`export.shapley`, so every backend returns
the same :class:`~export.io.Prediction`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from core.batch import ModalityBatch
from export import shapley
from export.io import Prediction, TextInput, batch_to_feeds, effective_presence

log = logging.getLogger(__name__)


class Runner(ABC):
    """Base runner. Use as a context manager, or call :meth:`activate` / :meth:`close` yourself."""

    name: str = "runner"
    text_input: TextInput = "embeddings"

    def __init__(self) -> None:
        self.is_active = False

    # lifecycle -------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate()
            self.is_active = True
            log.debug("activated %s", self.name)
        return self

    def close(self) -> None:
        if self.is_active:
            self._close()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # inference -------------------------------------------------------------------------------
    def infer(self, batch: ModalityBatch, contributions: bool = True) -> Prediction:
        """Score ``batch``; with ``contributions`` the 8 presence subsets run as one ``8·b`` batch."""
        self.activate()  # the graph's text input kind is known once the model is loaded
        return self.infer_feeds(batch_to_feeds(batch, self._batch_text_input(batch)), contributions)

    def infer_feeds(self, feeds: dict[str, np.ndarray], contributions: bool = True) -> Prediction:
        if not self.is_active:
            self.activate()
        feeds = self._prepare(feeds)
        presence = effective_presence(feeds)
        b = presence.shape[0]
        if not contributions:
            score, unimodal = self._run(feeds)
            return Prediction(np.asarray(score), np.asarray(unimodal), None, presence)
        expanded = {k: shapley.tile_rows(v) for k, v in feeds.items() if k != "presence"}
        expanded["presence"] = shapley.expand_presence(feeds["presence"])
        scores, unimodal = self._run(expanded)
        scores = np.asarray(scores)
        full = slice(shapley.FULL * b, (shapley.FULL + 1) * b)
        empty = slice(shapley.EMPTY * b, (shapley.EMPTY + 1) * b)
        return Prediction(
            score=scores[full],
            unimodal=np.asarray(unimodal)[full],
            contributions=shapley.combine(scores, presence),
            presence=presence,
            baseline=scores[empty],
        )

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The raw graph call ``(score, unimodal)``, no Shapley expansion (comparators, benchmarks)."""
        if not self.is_active:
            self.activate()
        return self._run(self._prepare(feeds))

    # backend hooks ---------------------------------------------------------------------------
    def _batch_text_input(self, batch: ModalityBatch) -> TextInput:
        """How to read ``batch``'s text: as token ids or embeddings (the graph's input by default)."""
        return self.text_input

    def _prepare(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-batch work done once before the Shapley expansion (e.g. an external text encoder)."""
        return feeds

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...

    def _close(self) -> None:
        return None

    def describe(self) -> str:
        return self.name
