"""What every factorized table shares: x_t = rows(t) @ B, with B an (r → H) Linear, the trained
tables listed for the optimiser, and an optional table quantization simulated while training."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compression.fake_quant import fake_quant_table


class FactorizedEmbedding(nn.Module):
    """Drop-in for nn.Embedding(V, H). Subclasses define `decode`, `vocab_size` and `code_tables`."""

    def __init__(self, B_rh: np.ndarray):
        super().__init__()
        r, H = B_rh.shape
        self.B = nn.Linear(r, H, bias=False)
        self.B.weight.data = torch.from_numpy(np.ascontiguousarray(B_rh.T, dtype=np.float32))  # (H, r)
        # (bits, block) of the table quantization to simulate while training; None: off.
        self.fake_quant: tuple[int, int] | None = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def code_tables(self) -> list[nn.Embedding]:
        """The tables the recovery trains (B is trained with them)."""
        raise NotImplementedError

    @property
    def num_params(self) -> int:
        """Stored numbers of the table (its parameters; subclasses add or leave out buffers)."""
        return sum(p.numel() for p in self.parameters())

    def constrain(self) -> None:
        """Put back what training must not move (called after each optimiser step); nothing by default."""

    def _rows(self, table: nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
        rows = table(idx)  # (..., r)
        if self.fake_quant is not None:
            # Row-local quantization, so simulating it on the gathered rows equals doing it on the table.
            shape = rows.shape
            rows = fake_quant_table(rows.reshape(-1, shape[-1]), *self.fake_quant).reshape(shape)
        return rows

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The (n, H) rows of a 1-D tensor of distinct token ids."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Decode each distinct id of the batch once, then gather: a padded batch of 32 sentences holds
        about a fifth as many distinct ids as positions (padding, [CLS], punctuation, "the"), and the
        decode (the codes' Gathers and the product with B) is the table's only real cost at run time.
        Exported as onnx Unique → decode → Gather by the inverse indices; exact."""
        distinct, inverse = torch.unique(input_ids, return_inverse=True)
        return self.decode(distinct)[inverse.view_as(input_ids)]  # view_as: one Shape and one Reshape in onnx

    @property
    def weight(self) -> torch.Tensor:
        """The dense V×H table it stands for (transformers reads .weight in a few places)."""
        return self.decode(torch.arange(self.vocab_size))
