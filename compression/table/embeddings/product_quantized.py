"""pq factors: x_t = concat_m C[m, codes[t, m]] @ B, M one-byte codes per token.

Decoded (for the distinct ids base.py's Unique yields) as Gather(codes, uint8) → Cast → Add(group
offsets) → Gather(flat centroids) → Reshape → MatMul(B); only the centroids (and B) are trained, the
codes are fixed by the k-means."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compression.table.embeddings.base import FactorizedEmbedding
from compression.table.factorize import Factors


class ProductQuantizedEmbedding(FactorizedEmbedding):
    def __init__(self, factors: Factors):
        super().__init__(factors.B_rh)
        M, K, d = factors.codebooks.shape
        self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(factors.codes)))  # uint8 (V, M)
        self.register_buffer("offsets", torch.arange(M, dtype=torch.long) * K)
        # Flat (M·K, d): group m's centroid k is row m·K + k, so one Gather reads every group.
        self.centroids = nn.Embedding(M * K, d)
        self.centroids.weight.data = torch.from_numpy(factors.codebooks.reshape(M * K, d).astype(np.float32))

    @property
    def vocab_size(self) -> int:
        return int(self.codes.shape[0])

    def code_tables(self) -> list[nn.Embedding]:
        return [self.centroids]

    @property
    def num_params(self) -> int:
        """The one-byte codes count too: they are stored numbers."""
        return super().num_params + self.codes.numel()

    def decode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The rows of a 1-D batch of distinct ids (what base.py's forward and weight pass)."""
        rows = self.centroids(self.codes[input_ids].long() + self.offsets)  # (n, M, d)
        return self.B(rows.flatten(1))  # one onnx Flatten (flatten(-2) exports as four shape nodes)
