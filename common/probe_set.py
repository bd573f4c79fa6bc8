"""The probe set a model directory carries: a few hundred fixed texts and the fp32 baseline's
embeddings of them (float16), written by the pipeline, so whoever loads the directory can measure
the model's fidelity on their own CPU — int8 kernels differ by instruction set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBE_FILE = "probe.npz"
PROBE_TEXTS = 256


@dataclass(frozen=True)
class ProbeSet:
    texts: list[str]
    reference: np.ndarray  # (n, dim) the baseline's embeddings, float16

    def write(self, model_dir: Path) -> None:
        np.savez(
            Path(model_dir) / PROBE_FILE,
            texts=np.asarray(self.texts, dtype=str),
            reference=self.reference.astype(np.float16),
        )

    @classmethod
    def read(cls, model_dir: Path) -> "ProbeSet | None":
        """The directory's probe set, or None when it has none (built before probe sets existed)."""
        path = Path(model_dir) / PROBE_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls([str(t) for t in data["texts"]], data["reference"])
