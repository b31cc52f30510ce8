"""Datasets, metrics, the trainer and the ``fine train`` / ``fine evaluate`` commands."""
