"""Step 7 of 8 (see build.py) — quality of an exported model, measured through onnxruntime exactly as served.

- STS-B test: Spearman ×100 between cos(u, v) and the gold score.
- Fidelity: cosine between this model's and the baseline's embedding of the
  same sentence, over STS-B test and SST-2 test sentences (mean, 1st percentile),
  or over the corpus's held-out slice where the shared data is absent; the
  held-out slice's figures are recorded in every case.
(SST-2 accuracy is the sentiment head's, compression/evaluation/heads.py: one figure for one question.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.fidelity import fidelity
from common.onnx_encoder import OnnxEncoder
from compression.corpus import read_sst2, read_sts


@dataclass
class EvalSet:
    """Every sentence evaluation embeds, so each model encodes them in one pass."""

    sts_s1: list[str]
    sts_s2: list[str]
    sts_scores: np.ndarray
    sst_test: list[str]

    def with_prompt(self, prompt: str) -> "EvalSet":
        if not prompt:
            return self
        return EvalSet(
            [prompt + t for t in self.sts_s1],
            [prompt + t for t in self.sts_s2],
            self.sts_scores,
            [prompt + t for t in self.sst_test],
        )

    @classmethod
    def load(cls, data_dir: Path) -> "EvalSet":
        sts = read_sts(data_dir, "test")
        sst_test, _ = read_sst2(data_dir, "test")
        return cls(sts.s1, sts.s2, sts.scores, sst_test)


@dataclass
class Embedded:
    """One model's embeddings of every evaluation text; the shared data's parts are None without it."""

    held_out: np.ndarray
    sts_u: np.ndarray | None = None
    sts_v: np.ndarray | None = None
    sst_test: np.ndarray | None = None

    def fidelity_vectors(self) -> np.ndarray:
        """Test sentences of the shared data where it exists, else the corpus's held-out slice."""
        if self.sts_u is None:
            return self.held_out
        return np.concatenate([self.sts_u, self.sts_v, self.sst_test])

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def embed_eval_set(
    encoder: OnnxEncoder, data: EvalSet | None, held_out: list[str], progress: str | None = None
) -> Embedded:
    """Every text in one length-ordered pass: the corpus's held-out slice, then the shared data's."""
    texts = list(held_out)
    if data is not None:
        texts += data.sts_s1 + data.sts_s2 + data.sst_test
    vecs = encoder.encode(texts, progress=progress)
    n0 = len(held_out)
    if data is None:
        return Embedded(vecs[:n0])
    n1, n2, n3 = len(data.sts_s1), len(data.sts_s2), len(data.sst_test)
    return Embedded(vecs[:n0], vecs[n0 : n0 + n1], vecs[n0 + n1 : n0 + n1 + n2], vecs[n0 + n1 + n2 : n0 + n1 + n2 + n3])


def spearman_x100(u: np.ndarray, v: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return float(spearmanr(cos, gold).statistic * 100)


def quality(emb: Embedded, data: EvalSet | None, baseline: Embedded | None) -> dict[str, float]:
    """The manifest's quality figures: fidelity always; STS-B where its data exists."""
    base = baseline or emb
    mean, p1 = fidelity(emb.fidelity_vectors(), base.fidelity_vectors())
    held_mean, held_p1 = fidelity(emb.held_out, base.held_out)
    figures = {
        "fidelity_mean": round(mean, 5),
        "fidelity_p1": round(p1, 5),
        "heldout_fidelity_mean": round(held_mean, 5),
        "heldout_fidelity_p1": round(held_p1, 5),
    }
    if data is not None:
        figures["stsb_spearman"] = round(spearman_x100(emb.sts_u, emb.sts_v, data.sts_scores), 2)
    return figures


def evaluations(data: EvalSet | None, data_dir: Path | None, held_out: int, corpus_source: str) -> dict[str, dict]:
    """Which evaluations ran, on which data and how many texts (the manifest records it)."""
    runs = {"heldout_fidelity": {"data": f"held-out slice of {corpus_source}", "texts": held_out}}
    if data is None:
        runs["fidelity"] = runs["heldout_fidelity"]
        return runs
    runs["fidelity"] = {
        "data": f"STS-B test and SST-2 test of {data_dir}",
        "texts": len(data.sts_s1) + len(data.sts_s2) + len(data.sst_test),
    }
    runs["stsb"] = {"data": f"STS-B test of {data_dir}", "pairs": len(data.sts_s1)}
    return runs
