"""Classification heads as plain weights: heads/<name>.json in a model directory.

Why plain weights and not an ONNX graph: a head is a k×d matrix and a bias
(k ≤ 6, d = 384); numpy applies it with softmax in microseconds on the
embedding the service already computed, with no second onnxruntime session per
head, and the file stays readable and diffable. Both sides use this module:
the pipeline writes heads, the service reads and applies them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise, shifted by the row max for stability."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Head:
    name: str
    labels: list[str]
    weights: np.ndarray  # (k, dim): one row per label
    bias: np.ndarray  # (k,)
    metrics: dict[str, float] = field(default_factory=dict)  # test accuracy and macro-F1, ×100
    trained_on: dict[str, object] = field(default_factory=dict)

    def probabilities(self, x_nd: np.ndarray) -> np.ndarray:
        """softmax(x Wᵀ + b) per row, (n, k)."""
        return softmax(x_nd @ self.weights.T + self.bias)

    def save(self, heads_dir: Path) -> Path:
        heads_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"weights": self.weights.tolist(), "bias": self.bias.tolist()}
        path = heads_dir / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "Head":
        data = json.loads(Path(path).read_text())
        head = cls(
            name=data["name"],
            labels=list(data["labels"]),
            weights=np.asarray(data["weights"], dtype=np.float32),
            bias=np.asarray(data["bias"], dtype=np.float32),
            metrics=data.get("metrics", {}),
            trained_on=data.get("trained_on", {}),
        )
        k = len(head.labels)
        if head.weights.ndim != 2 or head.weights.shape[0] != k or head.bias.shape != (k,):
            raise ValueError(f"{path}: weights {head.weights.shape} / bias {head.bias.shape} do not match {k} labels")
        return head


def load_heads(model_dir: Path) -> dict[str, Head]:
    heads_dir = Path(model_dir) / "heads"
    if not heads_dir.is_dir():
        return {}
    return {h.name: h for h in (Head.load(p) for p in sorted(heads_dir.glob("*.json")))}
