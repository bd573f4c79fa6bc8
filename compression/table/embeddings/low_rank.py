"""svd / weighted factors: one code row per token, x_t = A[t] @ B; exported as Gather(A) → MatMul(B)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compression.table.embeddings.base import FactorizedEmbedding
from compression.table.factorize import Factors


class LowRankEmbedding(FactorizedEmbedding):
    def __init__(self, factors: Factors):
        super().__init__(factors.B_rh)
        V, r = factors.A_vr.shape
        self.A = nn.Embedding(V, r)
        self.A.weight.data = torch.from_numpy(np.ascontiguousarray(factors.A_vr, dtype=np.float32))

    @property
    def vocab_size(self) -> int:
        return int(self.A.weight.shape[0])

    def code_tables(self) -> list[nn.Embedding]:
        return [self.A]

    def decode(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.B(self._rows(self.A, input_ids))
