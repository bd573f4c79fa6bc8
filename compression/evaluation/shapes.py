"""`python -m compression shapes`: which table shape buys most fidelity per byte, measured before any
recovery — the experiment behind the tiered default (docs/experiments.md).

Each shape is factorized as the default recipe does (pq in the sensitivity metric, the corpus's
token weights), its dense V×H reconstruction is put in the fp32 encoder, and the held-out texts'
fidelity to the built baseline is measured in torch. No recovery and no int8: minutes instead of a
build per shape, and the ranking it gives held after recovery for the shapes built in full. Shapes
are written `MxD` (M codes of D coordinates for every row) or `MxD+N` (tiered: the N most frequent
tokens get M more codes of the same width).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import torch

from common.fidelity import fidelity
from common.markdown import table
from compression.errors import ConfigError
from compression.evaluation.diagnose import encode_ids
from compression.model import SentenceEncoder, word_embedding_matrix
from compression.table.factorize import factorize
from compression.table.sensitivity import corpus_metric
from compression.table.sizing import DEFAULT_METRIC_SENTENCES, FP32, pq_table_bytes, sized_recipe

SHAPE = re.compile(r"^(\d+)x(\d+)(?:\+(\d+))?$")
COLUMNS = ("shape", "table_mb", "ratio", "fidelity_mean", "fidelity_p1")


def parse_shape(text: str) -> tuple[int, int, int]:
    """(codes, group width, tier rows) of `MxD` or `MxD+N`."""
    m = SHAPE.match(text)
    if not m:
        raise ConfigError(f"a shape is MxD or MxD+N (e.g. 88x4, 57x6+11743), not {text!r}")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def measure_shapes(ctx, baseline: str, shapes: list[str], seed: int = 0) -> list[dict]:
    parsed = [parse_shape(s) for s in shapes]  # every shape checked before the first is measured
    src = ctx.source
    E = word_embedding_matrix(src.bert)
    V, H = E.shape
    counts = ctx.counts(None)
    G = corpus_metric(ctx, src.bert, DEFAULT_METRIC_SENTENCES, seed)  # the recipe's metric_sentences
    ids = ctx.token_ids(ctx.corpus.held_out, src.max_seq_length)
    reference = ctx.evals.embedded(baseline).held_out
    rows = []
    for text, (codes, width, tier) in zip(shapes, parsed):
        # the default recipe's factorization (metric, weights, codebook) at this shape
        shape = {"rank": codes * width, "subspaces": codes, "tier_rows": tier, "tier_subspaces": codes if tier else 0}
        config = sized_recipe("shape", baseline, V, H, seed=seed, overrides={"factorize": shape}).factorize
        approx = factorize(E, config, counts, G).reconstruct()
        student = copy.deepcopy(src.bert)
        student.embeddings.word_embeddings.weight.data = torch.from_numpy(approx.astype(np.float32))
        mean, p1 = fidelity(encode_ids(SentenceEncoder(student, src.pooling), ids), reference)
        size = pq_table_bytes(V, H, codes, config.codebook_size, width, tier, codes if tier else 0)
        rows.append(
            {
                "shape": text,
                "table_mb": round(size / 1e6, 3),
                "ratio": round(V * H * FP32 / size, 1),
                "fidelity_mean": round(mean, 5),
                "fidelity_p1": round(p1, 5),
            }
        )
    return rows


def shapes_table(rows: list[dict]) -> str:
    return table(COLUMNS, rows)
