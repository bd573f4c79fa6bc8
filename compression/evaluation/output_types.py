"""What each compact output type costs (`embedding_type`, common/output_types.py), measured at build
time against the model's own float vectors: recall@10 of nearest-neighbour search over the held-out
texts, and STS-B Spearman where its data exists. The int8/uint8 ranges are calibrated here, on the
probe set, and stored in the manifest for the service."""

from __future__ import annotations

import numpy as np

from common.output_types import CALIBRATED, TYPES, calibrate, pair_similarity, quantize, similarity

QUERIES = 200  # held-out texts used as queries against all held-out texts


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    np.fill_diagonal(scores, -np.inf)  # a text is not its own neighbour
    return np.argsort(-scores, axis=1)[:, :k]


def measure(emb, eval_set, probe: np.ndarray) -> dict:
    """{"ranges": …, "quality": {type: {"recall_at_10", "stsb_spearman"?}}}."""
    from scipy.stats import spearmanr

    ranges = calibrate(probe)
    docs = emb.held_out
    k = min(10, len(docs) - 1)
    if k < 1:
        return {"ranges": ranges, "quality": {}}
    n = min(QUERIES, len(docs))
    truth = _top(similarity(docs[:n], docs, "float"), k)
    quality = {}
    for kind in TYPES[1:]:
        q_docs = quantize(docs, kind, ranges if kind in CALIBRATED else None)
        found = _top(similarity(q_docs[:n], q_docs, kind), k)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found)])
        row = {"recall_at_10": round(float(recall), 4)}
        if eval_set is not None and emb.sts_u is not None:
            qu = quantize(emb.sts_u, kind, ranges if kind in CALIBRATED else None)
            qv = quantize(emb.sts_v, kind, ranges if kind in CALIBRATED else None)
            pair = pair_similarity(qu, qv, kind)
            row["stsb_spearman"] = round(float(spearmanr(pair, eval_set.sts_scores).statistic * 100), 2)
        quality[kind] = row
    return {"ranges": ranges, "quality": quality}
