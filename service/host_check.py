"""The host self-check: at load, each model encodes its directory's probe set and is compared with
the fp32 baseline's embeddings the pipeline stored, so /models and the metrics say how faithful the
model is on *this* CPU, beside the figure its manifest was built with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.fidelity import fidelity
from common.probe_set import ProbeSet

from .runtime import Backend

BATCH = 64  # the pipeline's evaluation batch, in the same length order, so int8's per-batch ranges match


@dataclass(frozen=True)
class HostFidelity:
    mean: float
    p1: float
    texts: int
    built_mean: float | None  # the same figure on the machine that built the model (manifest.probe)
    built_p1: float | None


def encode_texts(backend: Backend, texts: list[str]) -> np.ndarray:
    """The backend's vectors of texts, straight on it (not through a batcher; thread-safe), in batches
    of BATCH in length order, rows in the texts' order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), backend.dim), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        out[idx] = backend.run(backend.tokenize([texts[i] for i in idx], True))
    return out


def measure(backend: Backend, model_dir: Path, built: dict) -> HostFidelity | None:
    """The model's fidelity on this host over its probe set; None when the directory has none."""
    probe = ProbeSet.read(model_dir)
    if probe is None or not probe.texts:
        return None
    mean, p1 = fidelity(encode_texts(backend, probe.texts), probe.reference)
    return HostFidelity(
        round(mean, 5), round(p1, 5), len(probe.texts), built.get("fidelity_mean"), built.get("fidelity_p1")
    )
