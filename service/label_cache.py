"""Zero-shot label vectors, kept for reuse within a bound: labels and templates are client strings,
so the cache is least-recently-used with a fixed number of entries, whatever clients send."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class LabelCache:
    """(model, template, label) → unit vector, at most `size` entries (0 keeps none)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str, str]) -> np.ndarray | None:
        vec = self._entries.get(key)
        if vec is not None:
            self._entries.move_to_end(key)
        return vec

    def put(self, key: tuple[str, str, str], vec: np.ndarray) -> None:
        if self.size <= 0:
            return
        self._entries[key] = vec
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, model: str) -> None:
        """Drop a model's vectors: a reload replaced or removed it, so they are another version's."""
        for key in [k for k in self._entries if k[0] == model]:
            del self._entries[key]
