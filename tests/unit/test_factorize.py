import numpy as np
import pytest

from compression.errors import ConfigError
from compression.table.factorize import (
    FactorizeConfig,
    factorize,
    rank_for_ratio,
    token_weights,
    truncated_svd,
    weighted_error,
    weighted_svd,
)


@pytest.fixture
def E():
    rng = np.random.default_rng(0)
    # Decaying spectrum like a real embedding table.
    return (rng.standard_normal((300, 48)) * np.linspace(3, 0.1, 48)).astype(np.float32)


def test_svd_error_equals_discarded_energy(E):
    rank = 12
    f = truncated_svd(E, rank)
    sigma = np.linalg.svd(E.astype(np.float64), compute_uv=False)
    err = ((E.astype(np.float64) - f.reconstruct()) ** 2).sum()
    assert err == pytest.approx((sigma[rank:] ** 2).sum(), rel=1e-4)


def test_weighted_lowers_weighted_error(E):
    counts = np.random.default_rng(1).zipf(1.5, size=E.shape[0]).clip(max=10_000)
    w = token_weights(counts, alpha=1.0, smoothing=1.0)
    plain = truncated_svd(E, 8).reconstruct()
    weighted = weighted_svd(E, w, 8).reconstruct()
    assert weighted_error(E, weighted, w) < weighted_error(E, plain, w)
    # ... and pays for it in plain Frobenius error, which SVD minimises.
    assert ((E - weighted) ** 2).sum() >= ((E - plain) ** 2).sum() - 1e-3


def test_param_counts_and_banding(E):
    V, H = E.shape
    counts = np.arange(V)[::-1].copy()
    f = factorize(E, FactorizeConfig(method="banded", rank=16, high_rows=50, low_rank=4), counts)
    assert f.num_params == 50 * 16 + (V - 50) * 4 + 16 * H
    low = np.setdiff1d(np.arange(V), f.high_ids)
    assert np.all(f.A_vr[low, 4:] == 0)
    assert set(f.high_ids) == set(range(50))  # the 50 most frequent (largest counts)
    assert factorize(E, FactorizeConfig(method="svd", rank=10)).num_params == V * 10 + 10 * H


def test_rank_from_ratio():
    r = rank_for_ratio(30522, 384, 16.0)
    assert 30522 * 384 / (r * (30522 + 384)) >= 16.0
    assert 30522 * 384 / ((r + 1) * (30522 + 384)) < 16.0
    f = factorize(np.ones((100, 20), np.float32), FactorizeConfig(method="svd", rank=None, target_ratio=4.0))
    assert f.rank == rank_for_ratio(100, 20, 4.0)


@pytest.mark.parametrize("rank", [0, -3, 48, 400])
def test_rank_out_of_range(E, rank):
    with pytest.raises(ConfigError, match="rank must satisfy"):
        factorize(E, FactorizeConfig(method="svd", rank=rank))


def test_weighted_needs_counts(E):
    with pytest.raises(ConfigError, match="needs token counts"):
        factorize(E, FactorizeConfig(method="weighted", rank=4))


def test_zigzag_deals_every_coordinate_once_and_balances_groups():
    from compression.table.factorize import zigzag_groups

    order = zigzag_groups(12, 3)
    assert sorted(order) == list(range(12))
    groups = order.reshape(3, 4)  # coordinates of group 0, 1, 2
    assert groups[0].tolist() == [0, 5, 6, 11] and groups[2].tolist() == [2, 3, 8, 9]
    assert len({int(g.sum()) for g in groups}) == 1  # equal rank sums: each gets high and low directions


def test_pq_codes_and_more_centroids_or_groups_lower_the_error(E):
    V, H = E.shape
    counts = np.random.default_rng(1).zipf(1.5, size=V).clip(max=10_000)

    def error(**kw):
        f = factorize(E, FactorizeConfig(method="pq", rank=H, **kw), counts)
        assert f.codes.dtype == np.uint8 and f.codes.shape == (V, kw["subspaces"])
        # The decoded table is exactly the centroids the codes name, in the basis B.
        d = H // kw["subspaces"]
        np.testing.assert_array_equal(f.A_vr[5, :d], f.codebooks[0, f.codes[5, 0]])
        return float(((E - f.reconstruct()) ** 2).sum())

    coarse = error(subspaces=8, codebook_size=16)
    assert error(subspaces=8, codebook_size=64) < coarse
    assert error(subspaces=16, codebook_size=16) < coarse
    # Frequency weighting: the frequent tokens' weighted error is lower than with uniform weights.
    w = token_weights(counts, alpha=1.0, smoothing=1.0)
    uniform = factorize(E, FactorizeConfig(method="pq", rank=H, subspaces=8, codebook_size=16, alpha=0.0), counts)
    weighted = factorize(E, FactorizeConfig(method="pq", rank=H, subspaces=8, codebook_size=16, alpha=1.0), counts)
    assert weighted_error(E, weighted.reconstruct(), w) < weighted_error(E, uniform.reconstruct(), w)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"rank": 48, "subspaces": 5}, "multiple of subspaces"),
        ({"rank": 48, "subspaces": 8, "codebook_size": 300}, "codebook_size"),
        ({"rank": 49, "subspaces": 7}, "pq rank must satisfy"),
    ],
)
def test_pq_bad_settings(E, kw, match):
    with pytest.raises(ConfigError, match=match):
        factorize(E, FactorizeConfig(method="pq", **kw), np.ones(E.shape[0]))
