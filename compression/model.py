"""Torch modules the pipeline trains and exports: the sentence encoder (BERT → the source's
pooling over the mask → optional L2 normalisation) and the swap of its word-embedding table for a
factorized one (compression/table/embeddings/)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import nn

from common.onnx_encoder import pad_ids
from compression.table.embeddings import FactorizedEmbedding, from_factors
from compression.table.factorize import Factors


class PoolingMode(StrEnum):
    """sentence-transformers' pooling modes."""

    MEAN = "mean"
    CLS = "cls"
    MAX = "max"
    MEAN_SQRT_LEN = "mean_sqrt_len"


POOLING_MODES = tuple(PoolingMode)


@dataclass(frozen=True)
class Pooling:
    """How token states become the sentence embedding (sentence-transformers' Pooling + Normalize)."""

    mode: PoolingMode = PoolingMode.MEAN
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode {self.mode!r}; supported: {', '.join(POOLING_MODES)}")
        object.__setattr__(self, "mode", PoolingMode(self.mode))


class SentenceEncoder(nn.Module):
    """input_ids, attention_mask (int64 [batch, seq]) → embedding (float32 [batch, dim]).

    token_type_ids are all zero for single sentences, so they are made inside
    the graph rather than being a model input.
    """

    def __init__(self, bert: nn.Module, pooling: Pooling = Pooling()):
        super().__init__()
        self.bert = bert
        self.pooling = pooling

    # Set by the ONNX export: forward also returns the pooled vector (the graph's `pooled` output). A
    # flag rather than a wrapper module, so the graph's tensor and node names stay `bert.…`, which the
    # ONNX importer and the quantizer read.
    export_pooled: bool = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        pooled, embedding = self.pooled_and_embedding(input_ids, attention_mask)
        return (embedding, pooled) if self.export_pooled else embedding

    def pooled_and_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled, embedding): the vector before the optional L2 normalisation, and the source's output."""
        hidden = hidden_states(self.bert, input_ids, attention_mask)
        pooled = pool_tokens(hidden, attention_mask, self.pooling.mode)
        return pooled, (nn.functional.normalize(pooled, p=2.0, dim=-1) if self.pooling.normalize else pooled)


def padded_batches(ids: list[list[int]], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, attention_mask) int64 tensors for consecutive batches of token-id rows, right-padded."""
    for start in range(0, len(ids), batch_size):
        input_ids, mask = pad_ids(ids[start : start + batch_size])
        yield torch.from_numpy(input_ids), torch.from_numpy(mask)


def hidden_states(bert: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The transformer's last hidden state (batch, seq, H) for single sentences (token types all zero)."""
    return bert(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
    ).last_hidden_state


def pool_tokens(hidden_bth: torch.Tensor, attention_mask_bt: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """The pooled vector over the real tokens, as sentence-transformers' Pooling computes it."""
    mask = attention_mask_bt.unsqueeze(-1).to(hidden_bth.dtype)
    if mode == "cls":
        return hidden_bth[:, 0]
    if mode == "max":
        # Padding positions are pushed far below any real value so they never win the max.
        return (hidden_bth + (mask - 1.0) * 1e9).max(dim=1).values
    total = (hidden_bth * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1e-9)  # the clamp guards an all-padding row
    return total / (count if mode == "mean" else count.sqrt())


def pool(hidden_bth: torch.Tensor, attention_mask_bt: torch.Tensor, pooling: Pooling = Pooling()) -> torch.Tensor:
    """The sentence embedding from the last hidden state: pooled, then L2-normalised if the source does."""
    pooled = pool_tokens(hidden_bth, attention_mask_bt, pooling.mode)
    return nn.functional.normalize(pooled, p=2.0, dim=-1) if pooling.normalize else pooled


def mean_pool_normalize(hidden_bth: torch.Tensor, attention_mask_bt: torch.Tensor) -> torch.Tensor:
    """The default sentence embedding: mean over real tokens, L2-normalised."""
    return pool(hidden_bth, attention_mask_bt, Pooling())


def with_factorized_embedding(bert: nn.Module, factors: Factors) -> nn.Module:
    """A deep copy of `bert` whose word-embedding table is replaced by the factors."""
    student = copy.deepcopy(bert)
    student.embeddings.word_embeddings = from_factors(factors)
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


def random_batch(
    batch: int, seq: int, vocab_size: int, rng: np.random.Generator, low: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random ids from low up (default: past a large vocabulary's special and rare pieces) and right
    padding of varying length."""
    if low is None:
        low = 1000 if vocab_size > 2000 else 1
    ids = rng.integers(low, vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for b in range(1, batch):
        keep = int(rng.integers(max(1, seq // 2), seq + 1))
        mask[b, keep:] = 0
        ids[b, keep:] = 0
    return ids, mask
