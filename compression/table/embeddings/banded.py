"""Banded factors: the k most frequent tokens keep all r coordinates, the others the first r_lo.

Two code tables, A_hi (k+1 × r) and A_lo (V−k+1 × r_lo), each with an all-zero row 0; int32 maps
send every token to its row in its own band and to row 0 of the other, so
x_t = A_hi[hi[t]] @ B + A_lo[lo[t]] @ B[:r_lo] needs no branching in the graph."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compression.table.embeddings.base import FactorizedEmbedding
from compression.table.factorize import Factors


class BandedEmbedding(FactorizedEmbedding):
    def __init__(self, factors: Factors):
        super().__init__(factors.B_rh)
        V, r = factors.A_vr.shape
        high = np.asarray(factors.high_ids)
        low = np.setdiff1d(np.arange(V), high)
        hi_map = np.zeros(V, dtype=np.int32)
        hi_map[high] = np.arange(1, len(high) + 1)
        lo_map = np.zeros(V, dtype=np.int32)
        lo_map[low] = np.arange(1, len(low) + 1)
        self.register_buffer("hi_map", torch.from_numpy(hi_map))
        self.register_buffer("lo_map", torch.from_numpy(lo_map))
        r_lo = int(factors.low_rank)
        # padding_idx=0 keeps the shared zero row at zero through training.
        self.A_hi = nn.Embedding(len(high) + 1, r, padding_idx=0)
        self.A_hi.weight.data = torch.from_numpy(np.vstack([np.zeros((1, r)), factors.A_vr[high]]).astype(np.float32))
        self.A_lo = nn.Embedding(len(low) + 1, r_lo, padding_idx=0)
        self.A_lo.weight.data = torch.from_numpy(
            np.vstack([np.zeros((1, r_lo)), factors.A_vr[low, :r_lo]]).astype(np.float32)
        )

    @property
    def vocab_size(self) -> int:
        return int(self.hi_map.shape[0])

    def code_tables(self) -> list[nn.Embedding]:
        return [self.A_hi, self.A_lo]

    @property
    def num_params(self) -> int:
        """Leaves out the constant all-zero row of each band."""
        return super().num_params - sum(t.weight.shape[1] for t in self.code_tables())

    def decode(self, input_ids: torch.Tensor) -> torch.Tensor:
        r_lo = self.A_lo.weight.shape[1]
        hi = self.B(self._rows(self.A_hi, self.hi_map[input_ids].long()))
        lo = nn.functional.linear(self._rows(self.A_lo, self.lo_map[input_ids].long()), self.B.weight[:, :r_lo])
        return hi + lo
