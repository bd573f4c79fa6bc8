"""The backend seam: tokenize → run → (pooling happens in the graph) → warm-up → health.

`OnnxBackend` runs a model directory with onnxruntime; `FixedBackend` returns
deterministic vectors without a model so API tests can run without one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from common import contract
from common.manifest import sha256_file
from common.onnx_encoder import (
    SessionConfig,
    make_session,
    pad_ids,
    shrinking_run_options,
)

from .errors import InvalidInput


@dataclass(frozen=True)
class Tokenized:
    """One text as token ids (already truncated when the request allowed it)."""

    ids: np.ndarray  # int64 (n_tokens,)
    head: int = 0  # leading special tokens ([CLS], <s>): kept at the start of every window (service/windows.py)
    tail: int = 0  # trailing special tokens ([SEP], </s>)


class Backend(Protocol):
    dim: int
    max_length: int
    # True: run() returns the pooled vector before the graph's L2 normalisation (its `pooled` output),
    # which the caller normalises for the embedding and returns as is for normalize=false.
    returns_pooled: bool

    def tokenize(self, texts: list[str], truncate: bool) -> list[Tokenized]:
        """truncate: ids cut to max_length; else every id, for the caller to window."""

    def from_ids(self, ids: list[list[int]], truncate: bool) -> list[Tokenized]: ...

    def run(self, batch: list[Tokenized]) -> np.ndarray: ...

    def warm_up(self) -> None: ...


def _specials(mask: list[int]) -> tuple[int, int]:
    """(leading, trailing) special tokens of an encoding, from its special_tokens_mask."""
    head = next((i for i, m in enumerate(mask) if not m), len(mask))
    tail = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
    return head, tail


# Up to this many texts are tokenized on the calling thread: waking the tokenizer's pool costs more.
SERIAL_TOKENIZE_MAX = 4


def serving_tokenizer(path: Path):
    """The tokenizer a backend uses: never padding, never truncating (whatever tokenizer.json says). A
    text over the limit must be seen whole to be refused (truncate=false), and cutting its ids by hand
    equals the library's own truncation; so one Tokenizer serves both paths (each copy keeps ~7 MB of
    vocabulary resident)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class SharedTokenizers:
    """One serving tokenizer per distinct tokenizer.json: a model's compressed variants ship their
    baseline's file byte for byte, so a service holding several of them keeps one vocabulary.
    Tokenizers are stateless once configured, and encode() is safe from several threads."""

    def __init__(self) -> None:
        self._by_digest: dict[str, object] = {}

    def get(self, path: Path):
        digest = sha256_file(path)
        if digest not in self._by_digest:
            self._by_digest[digest] = serving_tokenizer(path)
        return self._by_digest[digest]


class OnnxBackend:
    def __init__(self, model_dir: Path, max_length: int, session: SessionConfig = SessionConfig(), tokenizer=None):
        """tokenizer: a serving_tokenizer() to use (shared with other models); else the directory's own."""
        self.max_length = max_length
        self.tokenizer = tokenizer or serving_tokenizer(model_dir / contract.TOKENIZER_FILE)
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.session = make_session(model_dir / contract.MODEL_FILE, session)
        self.dim = int(self.session.get_outputs()[0].shape[1])
        self.returns_pooled = contract.OUTPUT_POOLED in {o.name for o in self.session.get_outputs()}
        self._output = contract.OUTPUT_POOLED if self.returns_pooled else contract.OUTPUT_EMBEDDING
        self._shrink = shrinking_run_options(session)
        self._keep_tokens = session.arena_keep_tokens

    def tokenize(self, texts: list[str], truncate: bool) -> list[Tokenized]:
        # encode_batch hands even one text to the library's thread pool, whose threads sleep while
        # onnxruntime runs: one sentence took 0.26 ms that way right after a run, 0.15 ms with encode().
        if len(texts) <= SERIAL_TOKENIZE_MAX:
            encodings = [self.tokenizer.encode(t) for t in texts]
        else:
            encodings = self.tokenizer.encode_batch(texts)
        if not truncate:
            return [Tokenized(np.asarray(e.ids, dtype=np.int64), *_specials(e.special_tokens_mask)) for e in encodings]
        return [Tokenized(self._truncated(e)) for e in encodings]

    def _truncated(self, encoding) -> np.ndarray:
        """ids cut to max_length, keeping a closing special token ([SEP]) as the tokenizer's truncation does."""
        ids = np.asarray(encoding.ids, dtype=np.int64)
        if len(ids) <= self.max_length:
            return ids
        if encoding.special_tokens_mask[-1]:
            return np.concatenate([ids[: self.max_length - 1], ids[-1:]])
        return ids[: self.max_length]

    def from_ids(self, ids: list[list[int]], truncate: bool) -> list[Tokenized]:
        """Pre-tokenized input (the OpenAI API allows token arrays); ids are taken as given."""
        for i, row in enumerate(ids):
            if not row:
                raise InvalidInput(f"input {i} is an empty token array")
            if min(row) < 0 or max(row) >= self.vocab_size:
                raise InvalidInput(f"input {i} has token ids outside [0, {self.vocab_size})")
        return [Tokenized(np.asarray(r if not truncate else r[: self.max_length], dtype=np.int64)) for r in ids]

    def run(self, batch: list[Tokenized]) -> np.ndarray:
        ids, mask = pad_ids([t.ids for t in batch])
        shrink = self._shrink if self._shrink is not None and ids.size > self._keep_tokens else None
        return self.session.run([self._output], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}, shrink)[0]

    def warm_up(self) -> None:
        """Run a few shapes so the first real request does not pay for allocation."""
        for batch, seq in ((1, 8), (8, 32), (2, min(128, self.max_length))):
            self.run([Tokenized(np.full(seq, 1000 % self.vocab_size, dtype=np.int64))] * batch)


class FixedBackend:
    """A model-free backend: each text maps to a fixed unit vector derived from its hash."""

    returns_pooled = False

    def __init__(self, dim: int = 8, max_length: int = 32):
        self.dim, self.max_length = dim, max_length

    def tokenize(self, texts: list[str], truncate: bool) -> list[Tokenized]:
        ids = [
            [int.from_bytes(hashlib.sha256(w.encode()).digest()[:2], "little") for w in t.split()] or [0] for t in texts
        ]
        return self.from_ids(ids, truncate)

    def from_ids(self, ids: list[list[int]], truncate: bool) -> list[Tokenized]:
        return [Tokenized(np.asarray(r if not truncate else r[: self.max_length], dtype=np.int64)) for r in ids]

    def run(self, batch: list[Tokenized]) -> np.ndarray:
        out = np.stack([np.random.default_rng(int(t.ids.sum())).standard_normal(self.dim) for t in batch])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def warm_up(self) -> None:
        self.run([Tokenized(np.zeros(1, np.int64))])
