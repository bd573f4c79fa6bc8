"""The tiered pq table: the rows of tokens the corpus shows often get a second set of codes, the others
keep the floor; sized from the corpus's counts, trained with its zero residual held, exported and served."""

import numpy as np
import pytest
import torch

from compression.config import FactorizeConfig
from compression.table.embeddings import from_factors
from compression.table.factorize import factorize
from compression.table.sizing import (
    TIER_MAX_ROWS,
    TIER_MIN_COUNT,
    pq_table_bytes,
    sized_recipe,
    tier_rows_for,
)

V, H = 600, 32


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(V, H)).astype(np.float32)
    counts = np.where(np.arange(V) < 150, rng.integers(5, 500, V), 0)  # 150 seen often, the rest never
    return E, counts


def _config(**tier) -> FactorizeConfig:
    return FactorizeConfig(method="pq", rank=H, subspaces=8, codebook_size=16, alpha=0.75, **tier)


def test_the_tier_refines_only_its_rows(table):
    E, counts = table
    plain = factorize(E, _config(), counts)
    tiered = factorize(E, _config(tier_rows=150, tier_subspaces=4), counts)
    in_tier = np.zeros(V, bool)
    in_tier[tiered.tier_ids] = True
    assert in_tier[:150].all() and not in_tier[150:].any()  # the most frequent rows
    err_plain, err_tiered = (((E - f.reconstruct()) ** 2).sum(1) for f in (plain, tiered))
    assert err_tiered[in_tier].mean() < 0.8 * err_plain[in_tier].mean()
    np.testing.assert_allclose(err_tiered[~in_tier], err_plain[~in_tier], rtol=1e-5)  # the floor is the plain pq
    assert tiered.rank == H + 4 * 4  # B gains the tier's directions


def test_the_module_decodes_the_factors_and_keeps_the_zero_residual(table):
    E, counts = table
    factors = factorize(E, _config(tier_rows=150, tier_subspaces=4), counts)
    emb = from_factors(factors)
    np.testing.assert_allclose(emb.weight.detach().numpy(), factors.reconstruct(), atol=1e-5)
    opt = torch.optim.Adam([emb.centroids.weight], lr=0.1)
    emb(torch.arange(V)).pow(2).sum().backward()
    opt.step()
    emb.constrain()
    zero = emb.centroids.weight[emb.zero_rows]
    assert torch.count_nonzero(zero) == 0  # rows outside the tier still decode to the floor alone
    assert emb.num_params == factors.num_params


def test_the_tier_follows_the_corpus():
    """A corpus that exercises many rows gets a large tier; one that reads few rows, a small one, and a
    corpus that shows nothing often enough, none (the plain table)."""
    broad = np.full(30522, TIER_MIN_COUNT)
    narrow = np.zeros(30522, int)
    narrow[:2000] = 50
    assert tier_rows_for(broad) == 30522 // 2
    assert tier_rows_for(narrow) == 2000
    assert tier_rows_for(np.ones(30522)) == 0
    assert tier_rows_for(np.full(250037, 100)) == TIER_MAX_ROWS  # the slot map stays 2 bytes a row
    big, small = (sized_recipe("a", "b", 30522, 384, tier_rows=n).factorize for n in (15000, 2000))
    assert (big.tier_rows, small.tier_rows) == (15000, 2000) and big.subspaces < small.subspaces
    assert sized_recipe("a", "b", 30522, 384, tier_rows=0).factorize.tier_rows == 0


@pytest.mark.parametrize("vocab,ratio", [(30522, 16), (250037, 32), (30522, 24)])
def test_a_tiered_table_fits_its_budget(vocab, ratio):
    rows = min(vocab // 3, TIER_MAX_ROWS)
    fz = sized_recipe("a", "b", vocab, 384, target_ratio=ratio, tier_rows=rows).factorize
    assert fz.tier_rows == rows and fz.tier_subspaces == fz.subspaces
    d = fz.rank // fz.subspaces
    used = pq_table_bytes(vocab, 384, fz.subspaces, 256, d, rows, fz.tier_subspaces)
    assert vocab * 384 * 4 / used >= ratio and fz.rank >= 0.8 * 384


def test_a_budget_that_affords_narrow_groups_stays_plain():
    assert sized_recipe("a", "b", 30522, 384, target_ratio=12, tier_rows=12000).factorize.tier_rows == 0


def test_a_tiered_variant_is_served_and_its_bytes_are_as_sized(tiny_model_dir, corpus, no_data, tmp_path):
    from common.manifest import Manifest
    from tests.compressing import assert_served_pair, compress_cli

    tier = ["--set", "factorize.tier_rows=60", "--set", "factorize.tier_subspaces=4"]
    assert compress_cli(tiny_model_dir, tmp_path, corpus, no_data, *tier) == 0
    assert_served_pair(tmp_path, "tiny-bert")
    m = Manifest.read(tmp_path / "tiny-bert-fact")
    fz = m.recipe["factorize"]
    assert (fz["tier_rows"], fz["tier_subspaces"]) == (60, 4)
    V, hidden = m.source["vocab_size"], m.dim
    sized = pq_table_bytes(V, hidden, fz["subspaces"], fz["codebook_size"], fz["rank"] // fz["subspaces"], 60, 4)
    assert abs(m.bytes.embedding - sized) < 0.05 * sized
    assert m.quality.heldout_fidelity_mean > 0.99


def test_shapes_measures_plain_and_tiered_before_recovery(tiny_model_dir, corpus, no_data, tmp_path, capsys):
    from compression.cli import main
    from compression.evaluation.shapes import parse_shape
    from tests.compressing import compress_cli

    assert compress_cli(tiny_model_dir, tmp_path, corpus, no_data) == 0  # the baseline to compare with
    argv = ["shapes", "--out", str(tmp_path), "--model", str(tiny_model_dir), "--data-dir", str(no_data)]
    argv += ["--corpus", str(corpus), "--baseline", "tiny-bert", "--no-progress", "4x4", "4x4+80"]
    capsys.readouterr()
    assert main(argv) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    (plain, tiered) = ({"shape": r[0].strip(), "mean": float(r[3]), "ratio": float(r[2])} for r in rows)
    assert (plain["shape"], tiered["shape"]) == ("4x4", "4x4+80")
    assert tiered["mean"] > plain["mean"] and tiered["ratio"] < plain["ratio"]  # more bytes, more fidelity
    with pytest.raises(Exception, match="MxD or MxD"):
        parse_shape("88-4")


def test_a_tier_turned_off_sizes_every_row_alike():
    off = sized_recipe("a", "b", 30522, 384, tier_rows=11743, overrides={"factorize": {"tier_rows": 0}}).factorize
    assert off.tier_rows == 0 and (off.subspaces, off.rank) == (88, 352)  # the plain 16× table
