"""Which shorter output vectors a model supports (OpenAI's `dimensions`): measured, not assumed.

A vector cut to its first d coordinates and re-normalised is only as good as the model was trained to
make it (Matryoshka representation learning); an ordinary encoder's first coordinates carry no more
than any others. So the build measures STS-B at d = H/2, H/4, H/8 (down to 32) and lists d as
supported when the cut vectors score within MAX_STS_DROP of the full ones; the service refuses any
other d (docs/service.md). Without STS data nothing is listed: a shorter vector's worth is unknown.
"""

from __future__ import annotations

import numpy as np

from common.fidelity import fidelity

MAX_STS_DROP = 1.0  # Spearman ×100 points a supported cut may lose against the full vector
MIN_DIM = 32


def candidates(dim: int) -> list[int]:
    out, d = [], dim // 2
    while d >= MIN_DIM:
        out.append(d)
        d //= 2
    return out


def _cut(vectors: np.ndarray, d: int) -> np.ndarray:
    v = vectors[:, :d]
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def measure(emb, base, eval_set) -> dict:
    """{"supported": [d…], "measured": {d: {stsb_spearman, heldout_fidelity_mean}}, "full_stsb_spearman"}:
    each cut's STS-B (when the data exists) and its held-out fidelity to the baseline cut alike."""
    from compression.evaluation.evaluate import spearman_x100

    dim = emb.held_out.shape[1]
    if eval_set is None or emb.sts_u is None:
        return {"supported": [], "measured": {}, "rule": "no STS data: no shorter vector is supported"}
    full = spearman_x100(emb.sts_u, emb.sts_v, eval_set.sts_scores)
    measured, supported = {}, []
    for d in candidates(dim):
        sts = spearman_x100(_cut(emb.sts_u, d), _cut(emb.sts_v, d), eval_set.sts_scores)
        mean, _ = fidelity(_cut(emb.held_out, d), _cut(base.held_out, d))
        measured[str(d)] = {"stsb_spearman": round(sts, 2), "heldout_fidelity_mean": round(mean, 5)}
        if sts >= full - MAX_STS_DROP:
            supported.append(d)
    return {
        "supported": supported,
        "measured": measured,
        "full_stsb_spearman": round(full, 2),
        "rule": f"STS-B within {MAX_STS_DROP:g} of the full vector's",
    }
