"""Torch modules the pipeline trains and exports: the factorized embedding and
the sentence encoder (BERT → mean pooling over the mask → L2 normalisation)."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .factorize import Factors
from .fake_quant import fake_quant_table


class FactorizedEmbedding(nn.Module):
    """Drop-in for nn.Embedding(V, H): x_t = A[t] @ B (+ R[slot[t]] for exact-row tokens).

    Exported as Gather(A) → MatMul(B); with exact rows, a Gather on a (k+1)×H
    residual table (row 0 all zeros) indexed by a V-long slot map is added.
    """

    def __init__(self, factors: Factors):
        super().__init__()
        V, r = factors.A_vr.shape
        self.A = nn.Embedding(V, r)
        self.A.weight.data = torch.from_numpy(np.ascontiguousarray(factors.A_vr, dtype=np.float32))
        self.B = nn.Linear(r, factors.B_rh.shape[1], bias=False)
        self.B.weight.data = torch.from_numpy(np.ascontiguousarray(factors.B_rh.T, dtype=np.float32))  # (H, r)
        k = len(factors.exact_ids)
        self.has_residual = k > 0
        if self.has_residual:
            slot = np.zeros(V, dtype=np.int64)
            slot[factors.exact_ids] = np.arange(1, k + 1)
            self.register_buffer("slot", torch.from_numpy(slot))
            R = np.vstack([np.zeros((1, factors.B_rh.shape[1]), np.float32), factors.R_kh])
            self.R = nn.Embedding(k + 1, R.shape[1])
            self.R.weight.data = torch.from_numpy(R)
        # (bits, block) of the table quantization to simulate while training; None: off.
        self.fake_quant: tuple[int, int] | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The dense V×H table it stands for (transformers reads .weight in a few places)."""
        return self.to_factors_dense()

    def to_factors_dense(self) -> torch.Tensor:
        E = self.A.weight @ self.B.weight.T
        if self.has_residual:
            E = E + self.R.weight[self.slot]
        return E

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.A(input_ids)  # (..., r)
        if self.fake_quant is not None:
            # Row-local quantization, so simulating it on the gathered rows equals doing it on A.
            shape = rows.shape
            rows = fake_quant_table(rows.reshape(-1, shape[-1]), *self.fake_quant).reshape(shape)
        x = self.B(rows)
        if self.has_residual:
            x = x + self.R(self.slot[input_ids])
        return x

    def to_factors(self) -> Factors:
        A = self.A.weight.detach().numpy().copy()
        B = self.B.weight.detach().numpy().T.copy()
        if self.has_residual:
            slot = self.slot.numpy()
            ids = np.nonzero(slot)[0]
            ids = ids[np.argsort(slot[ids])]
            return Factors(A, B, ids.astype(np.int64), self.R.weight.detach().numpy()[1:].copy())
        return Factors(A, B, np.zeros(0, np.int64), np.zeros((0, B.shape[1]), np.float32))


class SentenceEncoder(nn.Module):
    """input_ids, attention_mask (int64 [batch, seq]) → embedding (float32 [batch, dim]).

    token_type_ids are all zero for single sentences, so they are made inside
    the graph rather than being a model input.
    """

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state  # (batch, seq, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # Mean over real tokens only; the clamp guards an all-padding row.
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=-1)


def with_factorized_embedding(bert: nn.Module, factors: Factors) -> nn.Module:
    """A deep copy of `bert` whose word-embedding table is replaced by the factors."""
    student = copy.deepcopy(bert)
    student.embeddings.word_embeddings = FactorizedEmbedding(factors)
    return student


def word_embedding_matrix(bert: nn.Module) -> np.ndarray:
    """E (V×H) as float32 numpy."""
    return bert.embeddings.word_embeddings.weight.detach().float().numpy().copy()


def count_params(bert: nn.Module) -> dict[str, int]:
    """Parameters of the word-embedding table vs the rest of the encoder."""
    emb = sum(p.numel() for p in bert.embeddings.word_embeddings.parameters())
    total = sum(p.numel() for p in bert.parameters())
    # Unused pooler weights are not exported; leave them out of the counts.
    pooler = sum(p.numel() for p in bert.pooler.parameters()) if getattr(bert, "pooler", None) is not None else 0
    return {"embedding": int(emb), "encoder": int(total - emb - pooler), "total": int(total - pooler)}
