"""Step 7 — quality of an exported model, measured through onnxruntime exactly as served.

- STS-B test: Spearman ×100 between cos(u, v) and the gold score.
- Fidelity: cosine between this model's and the baseline's embedding of the
  same sentence, over STS-B test and SST-2 test sentences (mean, 1st percentile).
- SST-2: accuracy ×100 of a logistic-regression probe trained on embeddings of
  a fixed sample of SST-2 train phrases, tested on SST-2 test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.onnx_encoder import OnnxEncoder

from .corpus import read_sst2, read_sts
from .probe import fit_probe

PROBE_TRAIN_SIZE = 10000  # SST-2 train phrases for the probe (all 67k would dominate build time)


@dataclass
class EvalSet:
    """Every sentence evaluation embeds, so each model encodes them in one pass."""

    sts_s1: list[str]
    sts_s2: list[str]
    sts_scores: np.ndarray
    sst_test: list[str]
    sst_test_y: np.ndarray
    sst_train: list[str]
    sst_train_y: np.ndarray

    @classmethod
    def load(cls, data_dir: Path, probe_train_size: int = PROBE_TRAIN_SIZE, seed: int = 0) -> "EvalSet":
        sts = read_sts(data_dir, "test")
        sst_test, sst_test_y = read_sst2(data_dir, "test")
        sst_train, sst_train_y = read_sst2(data_dir, "train")
        pick = np.random.default_rng(seed).permutation(len(sst_train))[:probe_train_size]
        return cls(sts.s1, sts.s2, sts.scores, sst_test, sst_test_y,
                   [sst_train[i] for i in pick], sst_train_y[pick])


@dataclass
class Embedded:
    sts_u: np.ndarray
    sts_v: np.ndarray
    sst_test: np.ndarray
    sst_train: np.ndarray

    def fidelity_vectors(self) -> np.ndarray:
        return np.concatenate([self.sts_u, self.sts_v, self.sst_test])


def embed_eval_set(encoder: OnnxEncoder, data: EvalSet) -> Embedded:
    n1, n2, n3 = len(data.sts_s1), len(data.sts_s2), len(data.sst_test)
    vecs = encoder.encode(data.sts_s1 + data.sts_s2 + data.sst_test + data.sst_train)
    return Embedded(vecs[:n1], vecs[n1:n1 + n2], vecs[n1 + n2:n1 + n2 + n3], vecs[n1 + n2 + n3:])


def spearman_x100(u: np.ndarray, v: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return float(spearmanr(cos, gold).statistic * 100)


def cosines(vecs: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-sentence cosine between two models' embeddings of the same sentences."""
    return (vecs * base).sum(1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(base, axis=1))


def fidelity(vecs: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """(mean, 1st percentile) of the per-sentence cosine between two models' embeddings."""
    cos = cosines(vecs, base)
    return float(cos.mean()), float(np.percentile(cos, 1))


def quality(emb: Embedded, data: EvalSet, baseline: Embedded | None) -> dict[str, float]:
    probe = fit_probe(emb.sst_train, data.sst_train_y)
    acc = float(probe.classifier.score(emb.sst_test, data.sst_test_y) * 100)
    mean, p1 = fidelity(emb.fidelity_vectors(), (baseline or emb).fidelity_vectors())
    return {
        "stsb_spearman": round(spearman_x100(emb.sts_u, emb.sts_v, data.sts_scores), 2),
        "fidelity_mean": round(mean, 5),
        "fidelity_p1": round(p1, 5),
        "sst2_probe_accuracy": round(acc, 2),
    }
