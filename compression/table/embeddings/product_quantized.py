"""pq factors: x_t = concat_m C[m, codes[t, m]] @ B, M one-byte codes per token.

Decoded (for the distinct ids base.py's Unique yields) as Gather(codes, uint8) → Cast → Add(group
offsets) → Gather(flat centroids) → Reshape → MatMul(B); only the centroids (and B) are trained, the
codes are fixed by the k-means.

Tiered: the tier's M2 codes of token t are row slot[t] of a second code table, whose row 0 (the slot
of every token outside the tier) points at the tier groups' all-zero centroid 0. The two code rows are
concatenated before the one centroid Gather, so the graph stays a single Gather and product by B."""

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
        V = factors.codes.shape[0]
        self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(factors.codes)))  # uint8 (V, M1)
        self.register_buffer("offsets", torch.arange(M, dtype=torch.long) * K)
        # Flat (M·K, d): group m's centroid k is row m·K + k, so one Gather reads every group.
        self.centroids = nn.Embedding(M * K, d)
        self.centroids.weight.data = torch.from_numpy(factors.codebooks.reshape(M * K, d).astype(np.float32))
        self.register_buffer("tier_slot", None)  # set below when tiered
        if factors.tiered:
            N, M2 = factors.tier_codes.shape
            # int16 slots where they fit: the map is V entries, a byte more per token than its codes' row
            slot = np.zeros(V, np.int16 if N < 2**15 else np.int32)
            slot[factors.tier_ids] = np.arange(1, N + 1)
            tier = np.vstack([np.zeros((1, M2), np.uint8), factors.tier_codes])
            self.register_buffer("tier_slot", torch.from_numpy(slot))
            self.register_buffer("tier_codes", torch.from_numpy(np.ascontiguousarray(tier)))
            # centroid 0 of each tier group: the zero residual, held at zero through training (constrain)
            self.register_buffer("zero_rows", torch.arange(M - M2, M, dtype=torch.long) * K)

    def constrain(self) -> None:
        if self.tier_slot is not None:
            with torch.no_grad():
                self.centroids.weight[self.zero_rows] = 0.0

    @property
    def vocab_size(self) -> int:
        return int(self.codes.shape[0])

    def code_tables(self) -> list[nn.Embedding]:
        return [self.centroids]

    @property
    def num_params(self) -> int:
        """The one-byte codes (and the tier's slot map) count too: they are stored numbers."""
        extra = 0 if self.tier_slot is None else self.tier_codes.numel() + self.tier_slot.numel()
        return super().num_params + self.codes.numel() + extra

    def decode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The rows of a 1-D batch of distinct ids (what base.py's forward and weight pass)."""
        codes = self.codes[input_ids]
        if self.tier_slot is not None:
            codes = torch.cat([codes, self.tier_codes[self.tier_slot[input_ids].long()]], dim=1)
        rows = self.centroids(codes.long() + self.offsets)  # (n, M, d)
        return self.B(rows.flatten(1))  # one onnx Flatten (flatten(-2) exports as four shape nodes)
