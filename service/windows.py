"""Long inputs (`"truncate": false`): a text longer than the model's window is split into windows of
its token ids, every window embedded in the same batcher as any other text, and the windows' vectors
pooled into one.

A window is the text's leading special tokens ([CLS] / <s>), a slice of its content ids, and its
trailing ones ([SEP] / </s>), at most the model's max_length long; consecutive slices overlap by
`overlap` tokens so no sentence is only ever seen cut at a border. The text's vector is the mean of
its windows' vectors weighted by each window's content tokens, re-normalised (its pooled vector, for
normalize=false, the same mean without the normalisation). Caps on tokens per text and per request
keep one huge document from holding the queue: every window counts as one text against its capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputTooLong, PayloadTooLarge


@dataclass(frozen=True)
class Piece:
    ids: np.ndarray  # int64 token ids of the whole text, special tokens included
    head: int = 0  # leading special tokens
    tail: int = 0  # trailing special tokens


@dataclass(frozen=True)
class Plan:
    windows: list[np.ndarray]  # every window's ids, texts in order
    owner: np.ndarray  # (n_windows,) the text each window belongs to
    weight: np.ndarray  # (n_windows,) content tokens of each window
    texts: int

    def pool(self, vectors: np.ndarray, normalize: bool) -> np.ndarray:
        """(texts, dim): the token-weighted mean of each text's window vectors (re-normalised if asked)."""
        out = np.zeros((self.texts, vectors.shape[1]), dtype=np.float64)
        np.add.at(out, self.owner, vectors * self.weight[:, None])
        out /= np.bincount(self.owner, weights=self.weight, minlength=self.texts)[:, None]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)

    def per_text(self, vectors: np.ndarray) -> list[np.ndarray]:
        """Each text's window vectors, for return_windows."""
        return [vectors[self.owner == i] for i in range(self.texts)]


def split(piece: Piece, max_length: int, overlap: int) -> list[np.ndarray]:
    """The windows of one text: all of it when it fits, else overlapping slices of its content."""
    if len(piece.ids) <= max_length:
        return [piece.ids]
    head, tail = piece.ids[: piece.head], piece.ids[len(piece.ids) - piece.tail :]
    content = piece.ids[piece.head : len(piece.ids) - piece.tail]
    size = max_length - piece.head - piece.tail
    stride = max(1, size - min(overlap, size - 1))
    starts = range(0, max(1, len(content) - overlap), stride)
    return [np.concatenate([head, content[s : s + size], tail]) for s in starts if s < len(content)]


def plan(
    pieces: list[Piece], max_length: int, overlap: int, max_tokens_per_text: int, max_tokens_per_request: int
) -> Plan:
    """Windows for every text, after the caps (InputTooLong / PayloadTooLarge: 413)."""
    for i, p in enumerate(pieces):
        if len(p.ids) > max_tokens_per_text:
            raise InputTooLong(f"input {i} has {len(p.ids)} tokens, over the limit of {max_tokens_per_text} per text")
    total = sum(len(p.ids) for p in pieces)
    if total > max_tokens_per_request:
        raise PayloadTooLarge(f"the request has {total} tokens, over the limit of {max_tokens_per_request}")
    windows, owner, weight = [], [], []
    for i, p in enumerate(pieces):
        for w in split(p, max_length, overlap):
            windows.append(w)
            owner.append(i)
            weight.append(max(1, len(w) - p.head - p.tail))
    return Plan(windows, np.asarray(owner), np.asarray(weight, dtype=np.float64), len(pieces))
