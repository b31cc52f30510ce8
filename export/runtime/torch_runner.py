"""The reference backend: FINE in PyTorch eager mode (CPU or CUDA)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.model import FINE
from export.io import TextInput, feeds_to_tensors, fusion_only, text_input_of
from export.runtime.base import Runner


class TorchRunner(Runner):
    """``model``: a FINE module or an artifact directory. ``text_encoder="outside"`` makes the runner
    take pre-computed text embeddings, like a graph exported with the encoder outside.

    Activation puts the model in eval mode on ``device`` and calls :meth:`FINE.prepare_inference`, so
    the model must not be trained while a runner uses it (activate a new runner after training)."""

    def __init__(
        self,
        model: nn.Module | str | os.PathLike[str],
        device: str = "cpu",
        text_encoder: str = "inside",
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self._source = model
        self.device = torch.device(device)
        self.threads = threads
        self._text_encoder = text_encoder
        self.model: nn.Module | None = None
        self.name = f"torch-{self.device.type}"
        if isinstance(model, nn.Module):
            self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        self.text_input: TextInput = text_input_of(model, self._text_encoder)
        self.model = (fusion_only(model) if self.text_input == "embeddings" else model).eval()

    def _activate(self) -> None:
        if self.model is None:
            from core.artifact import load_model

            self._bind(load_model(Path(str(self._source))))
        assert self.model is not None
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model.to(self.device)
        if isinstance(self.model, FINE):
            self.model.prepare_inference()  # the Q-Former's inference weights, once (after the move)

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        assert self.model is not None
        features, masks, presence = feeds_to_tensors(feeds)
        features = {m: x.to(self.device) for m, x in features.items()}
        masks = {m: x.to(self.device) for m, x in masks.items()}
        with torch.inference_mode():
            score, unimodal = self.model.predict(features, masks, presence.to(self.device))  # type: ignore[operator]
        return score.float().cpu().numpy(), unimodal.float().cpu().numpy()
