"""Torch modules the pipeline trains and exports: the factorized embedding and
the sentence encoder (BERT → the source's pooling over the mask → optional L2 normalisation)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .factorize import Factors
from .fake_quant import fake_quant_table


class FactorizedEmbedding(nn.Module):
    """Drop-in for nn.Embedding(V, H): x_t = A[t] @ B.

    Plain: exported as Gather(A) → MatMul(B).
    Product-quantized: x_t = concat_m C[m, codes[t, m]] @ B, exported as
    Gather(codes, uint8) → Cast → Add(group offsets) → Gather(flat centroids)
    → Reshape → MatMul(B); only the centroids (and B) are trained.
    Banded: two code tables, A_hi (k+1 × r) for the frequent tokens and A_lo
    (V−k+1 × r_lo) for the rest, each with an all-zero row 0; int32 maps send
    every token to its row in its own band and to row 0 of the other, so
    x_t = A_hi[hi[t]] @ B + A_lo[lo[t]] @ B[:r_lo] needs no branching.
    """

    def __init__(self, factors: Factors):
        super().__init__()
        V, r = factors.A_vr.shape
        H = factors.B_rh.shape[1]
        self.B = nn.Linear(r, H, bias=False)
        self.B.weight.data = torch.from_numpy(np.ascontiguousarray(factors.B_rh.T, dtype=np.float32))  # (H, r)
        self.banded = factors.banded
        # (bits, block) of the table quantization to simulate while training; None: off.
        self.fake_quant: tuple[int, int] | None = None
        self.product_quantized = factors.product_quantized
        if self.product_quantized:
            M, K, d = factors.codebooks.shape
            self.register_buffer("codes", torch.from_numpy(np.ascontiguousarray(factors.codes)))  # uint8 (V, M)
            self.register_buffer("offsets", torch.arange(M, dtype=torch.long) * K)
            # Flat (M·K, d): group m's centroid k is row m·K + k, so one Gather reads every group.
            self.centroids = nn.Embedding(M * K, d)
            self.centroids.weight.data = torch.from_numpy(factors.codebooks.reshape(M * K, d).astype(np.float32))
            return
        if not self.banded:
            self.A = nn.Embedding(V, r)
            self.A.weight.data = torch.from_numpy(np.ascontiguousarray(factors.A_vr, dtype=np.float32))
            return
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
            np.vstack([np.zeros((1, r_lo)), factors.A_vr[low, :r_lo]]).astype(np.float32))

    @property
    def num_params(self) -> int:
        """Stored parameters, leaving out the constant all-zero rows of the banded tables;
        a pq table's one-byte codes count as parameters too (they are stored numbers)."""
        total = sum(p.numel() for p in self.parameters())
        if self.product_quantized:
            return total + self.codes.numel()
        return total - sum(t.weight.shape[1] for t in self.code_tables()) if self.banded else total

    def code_tables(self) -> list[nn.Embedding]:
        """The trained tables: centroids (pq), both bands' codes (banded) or A."""
        if self.product_quantized:
            return [self.centroids]
        return [self.A_hi, self.A_lo] if self.banded else [self.A]

    def _rows(self, table: nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
        rows = table(idx)  # (..., r)
        if self.fake_quant is not None:
            # Row-local quantization, so simulating it on the gathered rows equals doing it on the table.
            shape = rows.shape
            rows = fake_quant_table(rows.reshape(-1, shape[-1]), *self.fake_quant).reshape(shape)
        return rows

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.product_quantized:
            rows = self.centroids(self.codes[input_ids].long() + self.offsets)  # (..., M, d)
            return self.B(rows.flatten(-2))
        if not self.banded:
            return self.B(self._rows(self.A, input_ids))
        r_lo = self.A_lo.weight.shape[1]
        hi = self.B(self._rows(self.A_hi, self.hi_map[input_ids].long()))
        lo = nn.functional.linear(self._rows(self.A_lo, self.lo_map[input_ids].long()), self.B.weight[:, :r_lo])
        return hi + lo

    @property
    def weight(self) -> torch.Tensor:
        """The dense V×H table it stands for (transformers reads .weight in a few places)."""
        if self.product_quantized:
            vocab = self.codes.shape[0]
        elif self.banded:
            vocab = self.hi_map.shape[0]
        else:
            vocab = self.A.weight.shape[0]
        return self.forward(torch.arange(vocab))


POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")


@dataclass(frozen=True)
class Pooling:
    """How token states become the sentence embedding (sentence-transformers' Pooling + Normalize)."""

    mode: str = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode {self.mode!r}; supported: {', '.join(POOLING_MODES)}")


class SentenceEncoder(nn.Module):
    """input_ids, attention_mask (int64 [batch, seq]) → embedding (float32 [batch, dim]).

    token_type_ids are all zero for single sentences, so they are made inside
    the graph rather than being a model input.
    """

    def __init__(self, bert: nn.Module, pooling: Pooling = Pooling()):
        super().__init__()
        self.bert = bert
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state  # (batch, seq, H)
        return pool(hidden, attention_mask, self.pooling)


def pool(hidden_bth: torch.Tensor, attention_mask_bt: torch.Tensor, pooling: Pooling = Pooling()) -> torch.Tensor:
    """The sentence embedding from the last hidden state, as sentence-transformers' Pooling computes it."""
    mask = attention_mask_bt.unsqueeze(-1).to(hidden_bth.dtype)
    if pooling.mode == "cls":
        pooled = hidden_bth[:, 0]
    elif pooling.mode == "max":
        # Padding positions are pushed far below any real value so they never win the max.
        pooled = (hidden_bth + (mask - 1.0) * 1e9).max(dim=1).values
    else:
        total = (hidden_bth * mask).sum(dim=1)
        count = mask.sum(dim=1).clamp(min=1e-9)  # the clamp guards an all-padding row
        pooled = total / (count if pooling.mode == "mean" else count.sqrt())
    return nn.functional.normalize(pooled, p=2.0, dim=-1) if pooling.normalize else pooled


def mean_pool_normalize(hidden_bth: torch.Tensor, attention_mask_bt: torch.Tensor) -> torch.Tensor:
    """The default sentence embedding: mean over real tokens, L2-normalised."""
    return pool(hidden_bth, attention_mask_bt, Pooling())


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
    table = bert.embeddings.word_embeddings
    emb = table.num_params if isinstance(table, FactorizedEmbedding) else table.weight.numel()
    total = sum(p.numel() for p in bert.parameters()) - sum(p.numel() for p in table.parameters()) + emb
    # Unused pooler weights are not exported; leave them out of the counts.
    pooler = sum(p.numel() for p in bert.pooler.parameters()) if getattr(bert, "pooler", None) is not None else 0
    return {"embedding": int(emb), "encoder": int(total - emb - pooler), "total": int(total - pooler)}
