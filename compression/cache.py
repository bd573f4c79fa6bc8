"""The build's disk cache: arrays a step computes (the sensitivity metric, the teacher's embeddings, a
built variant's evaluation embeddings), kept under <out>/.cache/ and keyed by everything they depend
on, so a second table size, a rebuild or a later `compress` into the same folder reuses them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def texts_key(texts: list[str]) -> bytes:
    """A short key for a list of texts."""
    return hashlib.sha256("\n".join(texts).encode()).digest()


class DiskCache:
    def __init__(self, root: Path):
        self.root = root

    @property
    def dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def get(self, kind: str, key: list, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Arrays compute() returns, kept in <kind>-<digest>.npz, the digest taken over key (strings,
        bytes or arrays: everything the result depends on)."""
        digest = hashlib.sha256()
        for part in key:
            if isinstance(part, np.ndarray):
                digest.update(part.tobytes())
            else:
                digest.update(part if isinstance(part, bytes) else str(part).encode())
            digest.update(b"\0")
        path = self.dir / f"{kind}-{digest.hexdigest()[:16]}.npz"
        if path.is_file():
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        arrays = compute()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # a reader never sees half a cache file
        return arrays
