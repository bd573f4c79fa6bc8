"""Step 3 of 8 (see build.py) — factorize the word-embedding matrix E (V×H) into A (V×r) · B (r×H).

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
banded    weighted at rank `rank`, then frequency bands with different ranks:
          the `high_rows` most frequent tokens keep all r coordinates, every
          other token only the first `low_rank` (their best code in the top
          directions of the same orthonormal basis). Frequent tokens carry most
          of the text, so they get most of the bytes.
pq        product-quantized codes: B is the weighted basis (r ≤ H orthonormal
          rows; at r = H a rotation), A = E Bᵀ, and A's r coordinates are dealt
          into M groups of d = r/M; each group of each row is replaced by the
          nearest of K ≤ 256 centroids (frequency-weighted k-means), so a row
          costs M one-byte codes. A is then C[codes] · B. Unlike a low-rank code,
          every token, seen in the corpus or not, keeps an approximation as good
          as its group's centroids, and training the shared centroids moves the
          rows of unseen tokens too. Tiered (tier_rows N > 0): the N tokens the
          corpus shows most get M2 more codes, a pq of their residual in the
          first M2·d directions; held-out fidelity is lost mostly in the rows of
          tokens seen 10–99 times, so bytes go to seen rows and every other row
          keeps the M codes as its floor. The coordinates are dealt in a zig-zag by
          variance (1st, 2nd, … Mth, then Mth … 1st, …) so each group gets a
          similar share of high- and low-variance directions — k-means error is
          then spread evenly over the groups.

Metric (any method): `euclidean` measures a row's error as ‖E_v − Ê_v‖²;
`sensitivity` as (E_v − Ê_v)ᵀ G (E_v − Ê_v), G the encoder's estimated
sensitivity (compression/table/sensitivity.py): the method runs on E·G^{1/2} and B is
mapped back by G^{-1/2}, so the bytes go where an error would move the
sentence embeddings, and none to directions the first LayerNorm removes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from compression.config import (  # noqa: F401 (re-exported)
    METHODS,
    METRICS,
    FactorizeConfig,
)
from compression.errors import ConfigError


@dataclass
class Factors:
    """E ≈ A_vr @ B_rh. Banded: rows not in high_ids are zero past column low_rank.
    PQ: A_vr is decoded from codes and codebooks (kept for analysis; the model stores the codes)."""

    A_vr: np.ndarray
    B_rh: np.ndarray
    high_ids: np.ndarray | None = None  # (k,) token ids that keep the full rank; None: not banded
    low_rank: int | None = None
    codes: np.ndarray | None = None  # pq: (V, M) uint8, row v's centroid in each group
    codebooks: np.ndarray | None = None  # pq: (M + M2, K, d) float32 centroids (the tier's groups last)
    tier_ids: np.ndarray | None = None  # tiered pq: (N,) token ids whose rows get the tier's codes too
    tier_codes: np.ndarray | None = None  # tiered pq: (N, M2) uint8; centroid 0 of a tier group is zero

    @property
    def tiered(self) -> bool:
        return self.tier_ids is not None

    @property
    def product_quantized(self) -> bool:
        return self.codes is not None

    @property
    def rank(self) -> int:
        return int(self.B_rh.shape[0])

    @property
    def banded(self) -> bool:
        return self.high_ids is not None

    def reconstruct(self) -> np.ndarray:
        return self.A_vr @ self.B_rh

    @property
    def num_params(self) -> int:
        if self.product_quantized:  # stored numbers: one-byte codes, centroids, B (and the tier's row map)
            # the tier's codes with their all-zero row 0, and the V-entry slot map
            tier = self.tier_codes.size + self.tier_codes.shape[1] + self.codes.shape[0] if self.tiered else 0
            return int(self.codes.size + self.codebooks.size + self.B_rh.size + tier)
        if not self.banded:
            return int(self.A_vr.size + self.B_rh.size)
        k = len(self.high_ids)
        return int(k * self.rank + (self.A_vr.shape[0] - k) * self.low_rank + self.B_rh.size)


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
    if config.method == "pq":  # the codes carry the compression; r = H (a pure rotation) is allowed
        if not 0 < rank <= min(vocab, hidden):
            raise ConfigError(f"pq rank must satisfy 0 < r <= min(V, H) = {min(vocab, hidden)}, got {rank}")
    elif not 0 < rank < min(vocab, hidden):
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
    return Factors(A_vr, B_rh)


def weighted_svd(E_vh: np.ndarray, weights_v: np.ndarray, rank: int) -> Factors:
    """Row-weighted low rank: subspace from SVD of W^{1/2}E, codes by projection."""
    E = E_vh.astype(np.float64)
    _, _, Vt = np.linalg.svd(np.sqrt(weights_v)[:, None] * E, full_matrices=False)
    B_rh = Vt[:rank]  # orthonormal rows
    A_vr = E @ B_rh.T  # best code per row given B (least squares, weight-free)
    return Factors(A_vr.astype(np.float32), B_rh.astype(np.float32))


def zigzag_groups(rank: int, groups: int) -> np.ndarray:
    """Column order that deals coordinates 0..r-1 (variance descending) into `groups` contiguous
    groups in a zig-zag: group g gets g, 2M−1−g, 2M+g, … ."""
    deal = np.concatenate([np.arange(groups) if k % 2 == 0 else np.arange(groups)[::-1] for k in range(rank // groups)])
    return np.argsort(deal, kind="stable")  # coordinates of group 0 first, then group 1, …


KMEANS_INIT_ROWS = 8192  # rows k-means++ seeds each group's centroids from


def product_quantize(A_vr: np.ndarray, weights_v: np.ndarray, config: FactorizeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(codes (V, M) uint8, codebooks (M, K, d)): weighted k-means on each group of d columns."""
    from sklearn.cluster import KMeans, kmeans_plusplus
    from tqdm.auto import tqdm

    V, r = A_vr.shape
    M, K = config.subspaces, config.codebook_size
    d = r // M
    codes = np.empty((V, M), dtype=np.uint8)
    books = np.empty((M, K, d), dtype=np.float32)
    rng = np.random.default_rng(config.seed)
    for m in tqdm(range(M), desc="pq k-means", unit="group", leave=False, disable=None):  # None: off unless a tty
        X = A_vr[:, m * d : (m + 1) * d]
        # k-means++ seeding on a row sample: the seeding, not the iterations, is most of k-means' time on
        # 30k rows, and on 8,192 rows it lands within 1% of the full seeding's final inertia.
        sub = rng.choice(V, min(V, KMEANS_INIT_ROWS), replace=False)
        init, _ = kmeans_plusplus(X[sub], K, sample_weight=weights_v[sub], random_state=config.seed + m)
        km = KMeans(K, init=init, n_init=1, max_iter=config.kmeans_iters, random_state=config.seed + m)
        km.fit(X, sample_weight=weights_v)
        codes[:, m] = km.labels_
        books[m] = km.cluster_centers_
    return codes, books


def frequency_order(counts_v: np.ndarray) -> np.ndarray:
    """Token ids, most frequent first; ties (e.g. unseen tokens) by id, which in WordPiece
    vocabularies roughly follows the frequency of the corpus the vocabulary was built on."""
    return np.lexsort((np.arange(len(counts_v)), -counts_v))


def factorize(
    E_vh: np.ndarray, config: FactorizeConfig, counts_v: np.ndarray | None = None, metric_hh: np.ndarray | None = None
) -> Factors:
    """Dispatch on config.method; counts are needed by the weighted methods, metric_hh (G, H×H) by
    the sensitivity metric."""
    if config.metric == "sensitivity":
        from compression.table.metric import metric_root

        if metric_hh is None or metric_hh.shape != (E_vh.shape[1],) * 2:
            raise ConfigError(f"the sensitivity metric needs a {E_vh.shape[1]}×{E_vh.shape[1]} matrix G")
        P_hh, P_inv_hh = metric_root(metric_hh)
        # Factorize E·P ≈ A·B′ in the plain metric; then Ê = A·(B′·P⁻¹).
        f = _factorize(np.ascontiguousarray(E_vh @ P_hh, dtype=np.float32), config, counts_v)
        f.B_rh = (f.B_rh.astype(np.float64) @ P_inv_hh).astype(np.float32)
        return f
    return _factorize(E_vh, config, counts_v)


def _factorize(E_vh: np.ndarray, config: FactorizeConfig, counts_v: np.ndarray | None) -> Factors:
    V, H = E_vh.shape
    rank = resolve_rank(config, V, H)
    if config.method == "svd":
        return truncated_svd(E_vh, rank)
    if counts_v is None or counts_v.shape != (V,):
        raise ConfigError(f"method {config.method!r} needs token counts of shape ({V},)")
    weights = token_weights(counts_v, config.alpha, config.smoothing)
    factors = weighted_svd(E_vh, weights, rank)
    if config.method == "pq":
        M, K = config.subspaces, config.codebook_size
        if M <= 0 or rank % M:
            raise ConfigError(f"pq: rank {rank} must be a positive multiple of subspaces, got {M}")
        if not 1 < K <= 256 or K > V:
            raise ConfigError(f"pq: codebook_size must satisfy 1 < K <= min(256, V), got {K}")
        order = zigzag_groups(rank, M)
        A, B = factors.A_vr[:, order], factors.B_rh[order]
        codes, books = product_quantize(A, weights, config)
        decoded = books[np.arange(M)[None, :], codes].reshape(V, rank)  # (V, M, d) → (V, r)
        if config.tier_rows <= 0:
            return Factors(decoded, B, codes=codes, codebooks=books)
        return _with_tier(factors, order, decoded, codes, books, weights, counts_v, config)
    if config.method == "banded":
        if not 0 < config.low_rank < rank:
            raise ConfigError(f"low_rank must satisfy 0 < low_rank < rank = {rank}, got {config.low_rank}")
        if not 0 < config.high_rows < V:
            raise ConfigError(f"high_rows must satisfy 0 < high_rows < V = {V}, got {config.high_rows}")
        order = frequency_order(counts_v)
        factors.high_ids = np.sort(order[: config.high_rows]).astype(np.int64)
        factors.low_rank = config.low_rank
        low = order[config.high_rows :]
        # B has orthonormal rows, so dropping trailing coordinates is the best code in the top directions.
        factors.A_vr[low, config.low_rank :] = 0.0
    return factors


def _with_tier(
    basis: Factors,
    order: np.ndarray,
    decoded: np.ndarray,
    codes: np.ndarray,
    books: np.ndarray,
    weights: np.ndarray,
    counts_v: np.ndarray,
    config: FactorizeConfig,
) -> Factors:
    """The tier on top of the base pq: the tier_rows most frequent tokens' residual A − Â in the basis's
    first r2 = M2·d directions (variance order), pq'd with K − 1 centroids per group plus an all-zero
    centroid 0 — the code every other token's row points to, so the decode needs no branch. B grows by
    those r2 directions: x_t = [Â_t, R̂_t] · [B; B[:r2]]."""
    V, rank = basis.A_vr.shape
    M, K, d = books.shape
    M2, N = config.tier_subspaces, min(config.tier_rows, V)
    if not 0 < M2 * d <= rank:
        raise ConfigError(f"pq tier: tier_subspaces·d must be in (0, rank = {rank}], got {M2}·{d}")
    if K < 3:
        raise ConfigError("pq tier: needs codebook_size ≥ 3 (one centroid is the zero residual)")
    r2 = M2 * d
    tier_ids = np.sort(frequency_order(counts_v)[:N]).astype(np.int64)
    residual = np.empty_like(basis.A_vr)
    residual[:, order] = basis.A_vr[:, order] - decoded  # back in variance order
    order2 = zigzag_groups(r2, M2)
    R = np.ascontiguousarray(residual[tier_ids][:, :r2][:, order2])
    tier_config = dataclasses.replace(config, subspaces=M2, codebook_size=K - 1, seed=config.seed + 7919)
    tier_codes, tier_books = product_quantize(R, weights[tier_ids], tier_config)
    tier_codes = (tier_codes + 1).astype(np.uint8)  # code 0: the zero residual
    tier_books = np.concatenate([np.zeros((M2, 1, d), np.float32), tier_books], axis=1)
    A = np.zeros((V, rank + r2), np.float32)
    A[:, :rank] = decoded
    A[tier_ids, rank:] = tier_books[np.arange(M2)[None, :], tier_codes].reshape(N, r2)
    B = np.concatenate([basis.B_rh[order], basis.B_rh[:r2][order2]])
    return Factors(
        A,
        B,
        codes=codes,
        codebooks=np.concatenate([books, tier_books]),
        tier_ids=tier_ids,
        tier_codes=tier_codes,
    )


def weighted_error(E_vh: np.ndarray, approx_vh: np.ndarray, weights_v: np.ndarray) -> float:
    """Σ_v w_v ‖E_v − Ê_v‖² — the objective the weighted method minimises."""
    return float((weights_v * ((E_vh - approx_vh) ** 2).sum(axis=1)).sum())
