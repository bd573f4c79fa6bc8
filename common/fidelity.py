"""Fidelity: the per-text cosine between two models' embeddings of the same texts. One definition for
the pipeline's evaluation and the service's host self-check."""

from __future__ import annotations

import numpy as np


def cosines(vecs: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-row cosine between two (n, dim) arrays of embeddings of the same n texts."""
    vecs, base = vecs.astype(np.float32, copy=False), base.astype(np.float32, copy=False)
    return (vecs * base).sum(-1) / (np.linalg.norm(vecs, axis=-1) * np.linalg.norm(base, axis=-1))


def fidelity(vecs: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """(mean, 1st percentile) of the per-row cosine."""
    cos = cosines(vecs, base)
    return float(cos.mean()), float(np.percentile(cos, 1))
