"""The FINE inference graph: Mixture of Q-Formers, FTRE, fusion Transformer and heads."""

from core.model.fine import FINE, FineOutput, ModalityFeatures

__all__ = ["FINE", "FineOutput", "ModalityFeatures"]
