"""The sensitivity metric's numpy maths (no torch): its square root, and the error a factorization
minimises in it. compression/table/sensitivity.py estimates G; compression/table/factorize.py factorizes in it.
Kept apart so that factorize, sensitivity and model do not import each other in a circle."""

from __future__ import annotations

import numpy as np

# Directions the encoder all but ignores still get this share of the mean eigenvalue, so that
# P⁻¹ stays bounded and an error there cannot grow without limit.
EIGEN_FLOOR = 1e-3


def metric_root(G_hh: np.ndarray, floor: float = EIGEN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(P, P⁻¹) with P = (G / mean eigenvalue)^{1/2} (symmetric), eigenvalues floored at floor × their mean.

    The scale of G does not change what minimises the error; dividing by the mean eigenvalue keeps
    E·P about as large as E, so the factors (centroids, codes) keep the magnitudes the recovery's
    learning rates were chosen for.
    """
    eig, Q = np.linalg.eigh((G_hh + G_hh.T) / 2)
    eig = np.maximum(eig, floor * eig.mean()) / eig.mean()
    return (Q * np.sqrt(eig)) @ Q.T, (Q / np.sqrt(eig)) @ Q.T


def metric_error(E_vh: np.ndarray, approx_vh: np.ndarray, weights_v: np.ndarray, G_hh: np.ndarray) -> float:
    """Σ_v w_v (E_v − Ê_v)ᵀ G (E_v − Ê_v): the objective a factorization in the metric minimises."""
    diff = (E_vh - approx_vh).astype(np.float64)
    return float((weights_v * np.einsum("vh,hk,vk->v", diff, G_hh, diff)).sum())
