"""The last texts each model was asked to embed, bounded per model and per text, so that a swap
can be checked on the traffic the service really sees as well as on the fixed probe set. Kept in
memory only; keys are loaded models' names, never a client's string."""

from __future__ import annotations

from collections import deque

MAX_CHARS = 1000  # longer texts are cut: the gate compares vectors, a prefix is as good a probe


class RecentTexts:
    def __init__(self, per_model: int):
        self.per_model = per_model
        self._texts: dict[str, deque[str]] = {}

    def add(self, model: str, texts: list[str]) -> None:
        if self.per_model <= 0:
            return
        buf = self._texts.setdefault(model, deque(maxlen=self.per_model))
        buf.extend(t[:MAX_CHARS] for t in texts[-self.per_model :])

    def get(self, model: str) -> list[str]:
        return list(dict.fromkeys(self._texts.get(model, ())))  # distinct, oldest first

    def forget(self, model: str) -> None:
        self._texts.pop(model, None)
