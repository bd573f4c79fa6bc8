"""Step 2 — factorize the word-embedding matrix E (V×H) into A (V×r) · B (r×H).

Methods
-------
svd       truncated SVD: E ≈ U_r S_r V_rᵀ, with A = U_r S_r and B = V_rᵀ. By the
          Eckart–Young theorem this minimises ‖E − AB‖_F over all rank-r pairs,
          and the squared error is the discarded energy Σ_{i>r} σ_i².
weighted  frequency-weighted SVD: minimise Σ_v w_v ‖E_v − A_v B‖² with w_v
          growing with how often token v occurs. Row weights only change which
          r-dimensional subspace is kept: it is the top-r right singular subspace
          of W^{1/2}E. Given that subspace (orthonormal rows B), each row's best
          code is its projection A_v = E_v Bᵀ, independent of its weight.
hybrid    weighted, plus the `exact_rows` most frequent tokens keep a residual
          row so that they are reproduced (almost) exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

METHODS = ("svd", "weighted", "hybrid")


@dataclass(frozen=True)
class FactorizeConfig:
    method: str = "weighted"
    rank: int | None = 64
    # If set instead of rank: the rank whose fp32 factor bytes are ≈ V·H / ratio.
    target_ratio: float | None = None
    # Weight w_v = (count_v + smoothing) ** alpha; alpha=0 gives plain SVD, 1 is pure frequency.
    alpha: float = 0.5
    smoothing: float = 1.0
    # hybrid only: how many of the most frequent tokens keep an exact residual row.
    exact_rows: int = 0


@dataclass
class Factors:
    """E ≈ A_vr @ B_rh (+ residual rows R_kh for the tokens listed in exact_ids)."""

    A_vr: np.ndarray
    B_rh: np.ndarray
    exact_ids: np.ndarray  # (k,) int64 token ids with an exact residual row
    R_kh: np.ndarray  # (k, H) residual E[exact_ids] − A[exact_ids] @ B

    @property
    def rank(self) -> int:
        return int(self.B_rh.shape[0])

    def reconstruct(self) -> np.ndarray:
        E_vh = self.A_vr @ self.B_rh
        if len(self.exact_ids):
            E_vh[self.exact_ids] += self.R_kh
        return E_vh

    @property
    def num_params(self) -> int:
        return int(self.A_vr.size + self.B_rh.size + self.R_kh.size)


def rank_for_ratio(vocab: int, hidden: int, ratio: float) -> int:
    """Largest r with V·H / (V·r + r·H) ≥ ratio."""
    if ratio <= 1:
        raise ConfigError(f"target ratio must be > 1, got {ratio}")
    return max(1, int(vocab * hidden / (ratio * (vocab + hidden))))


def resolve_rank(config: FactorizeConfig, vocab: int, hidden: int) -> int:
    rank = config.rank if config.rank is not None else None
    if rank is None:
        if config.target_ratio is None:
            raise ConfigError("give either a rank or a target compression ratio")
        rank = rank_for_ratio(vocab, hidden, config.target_ratio)
    if not 0 < rank < min(vocab, hidden):
        raise ConfigError(f"rank must satisfy 0 < r < min(V, H) = {min(vocab, hidden)}, got {rank}")
    return rank


def token_weights(counts_v: np.ndarray, alpha: float, smoothing: float) -> np.ndarray:
    """w_v = (count + smoothing)^alpha, scaled to mean 1 (scale does not change the subspace)."""
    w = (counts_v.astype(np.float64) + smoothing) ** alpha
    return w / w.mean()


def truncated_svd(E_vh: np.ndarray, rank: int) -> Factors:
    U, S, Vt = np.linalg.svd(E_vh.astype(np.float64), full_matrices=False)
    A_vr = (U[:, :rank] * S[:rank]).astype(np.float32)
    B_rh = Vt[:rank].astype(np.float32)
    return Factors(A_vr, B_rh, np.zeros(0, np.int64), np.zeros((0, E_vh.shape[1]), np.float32))


def weighted_svd(E_vh: np.ndarray, weights_v: np.ndarray, rank: int) -> Factors:
    """Row-weighted low rank: subspace from SVD of W^{1/2}E, codes by projection."""
    E = E_vh.astype(np.float64)
    _, _, Vt = np.linalg.svd(np.sqrt(weights_v)[:, None] * E, full_matrices=False)
    B_rh = Vt[:rank]  # orthonormal rows
    A_vr = E @ B_rh.T  # best code per row given B (least squares, weight-free)
    return Factors(A_vr.astype(np.float32), B_rh.astype(np.float32), np.zeros(0, np.int64),
                   np.zeros((0, E.shape[1]), np.float32))


def factorize(E_vh: np.ndarray, config: FactorizeConfig, counts_v: np.ndarray | None = None) -> Factors:
    """Dispatch on config.method; counts are needed by the weighted methods."""
    V, H = E_vh.shape
    rank = resolve_rank(config, V, H)
    if config.method not in METHODS:
        raise ConfigError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    if config.method == "svd":
        return truncated_svd(E_vh, rank)
    if counts_v is None or counts_v.shape != (V,):
        raise ConfigError(f"method {config.method!r} needs token counts of shape ({V},)")
    factors = weighted_svd(E_vh, token_weights(counts_v, config.alpha, config.smoothing), rank)
    if config.method == "hybrid" and config.exact_rows > 0:
        k = min(config.exact_rows, V)
        exact_ids = np.sort(np.argsort(-counts_v, kind="stable")[:k]).astype(np.int64)
        factors.exact_ids = exact_ids
        factors.R_kh = (E_vh[exact_ids] - factors.A_vr[exact_ids] @ factors.B_rh).astype(np.float32)
    return factors


def weighted_error(E_vh: np.ndarray, approx_vh: np.ndarray, weights_v: np.ndarray) -> float:
    """Σ_v w_v ‖E_v − Ê_v‖² — the objective the weighted method minimises."""
    return float((weights_v * ((E_vh - approx_vh) ** 2).sum(axis=1)).sum())
