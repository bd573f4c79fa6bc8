"""The factorized word-embedding table, one module per storage scheme behind one interface
(`FactorizedEmbedding`): low_rank.py (svd, weighted), banded.py, product_quantized.py (pq).

`from_factors` picks the scheme the factorization produced. Every scheme keeps its submodules'
names (`A`, `A_hi`/`A_lo`, `centroids`, `B`) because the exported graph's node names carry them
and the quantizer finds the table's Gathers by them (compression/export/quantize.py)."""

from __future__ import annotations

from compression.table.embeddings.banded import BandedEmbedding
from compression.table.embeddings.base import FactorizedEmbedding
from compression.table.embeddings.low_rank import LowRankEmbedding
from compression.table.embeddings.product_quantized import ProductQuantizedEmbedding
from compression.table.factorize import Factors

__all__ = ["FactorizedEmbedding", "LowRankEmbedding", "BandedEmbedding", "ProductQuantizedEmbedding", "from_factors"]


def from_factors(factors: Factors) -> FactorizedEmbedding:
    """The table module for these factors: pq codes, frequency bands or a plain low-rank code."""
    if factors.product_quantized:
        return ProductQuantizedEmbedding(factors)
    if factors.banded:
        return BandedEmbedding(factors)
    return LowRankEmbedding(factors)
