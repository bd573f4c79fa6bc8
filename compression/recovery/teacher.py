"""The teacher's side of recovery: the baseline's embeddings of the texts the student is distilled on —
a seeded sample of the corpus and its rare-token copies (augment.py) — cached on disk by the
baseline's model and the token ids, so a search over table sizes embeds them once.

`ctx` is the build's BuildContext (compression/build.py): its inputs and its disk cache."""

from __future__ import annotations

import logging

import numpy as np

from common import contract
from common.manifest import sha256_file
from common.onnx_encoder import OnnxEncoder
from compression.config import RecoverConfig

log = logging.getLogger(__name__)


def teacher_embeddings(ctx, baseline: str, rows: list[list[int]], what: str) -> np.ndarray:
    """The baseline's embeddings of token-id rows (ids of a trimmed vocabulary mapped back to its own)."""
    if ctx.id_map is not None:
        rows = [ctx.id_map[np.asarray(r, dtype=np.int64)].tolist() for r in rows]
    model_dir = ctx.out_root / baseline
    key = [
        sha256_file(model_dir / contract.MODEL_FILE),
        np.concatenate([np.asarray(r) for r in rows]) if rows else b"",
        np.asarray([len(r) for r in rows]),
    ]

    def compute() -> dict[str, np.ndarray]:
        log.info("teacher: embedding %d %s with %s", len(rows), what, baseline)
        encoder = OnnxEncoder(model_dir, threads=ctx.threads)
        return {"vecs": encoder.encode_ids(rows, progress="teacher" if ctx.progress else None)}

    return ctx.disk.get("teacher", key, compute)["vecs"]


def distill_corpus(ctx, baseline: str, num: int, max_length: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids and the baseline's embeddings of a seeded sample of the corpus."""
    _, ids = ctx.sample_train(num, max_length, seed)
    return ids, teacher_embeddings(ctx, baseline, ids, "corpus texts")


def augmented_corpus(
    ctx, baseline: str, ids: list[list[int]], counts: np.ndarray | None, rc: RecoverConfig
) -> tuple[list[list[int]], np.ndarray]:
    """Rare-token copies of the distillation sentences and the baseline's embeddings of them."""
    from tokenizers import Tokenizer

    from compression.recovery.augment import rare_tokens, replace_tokens

    if counts is None:
        counts = ctx.counts(None)
    vocab = Tokenizer.from_file(str(ctx.source.tokenizer_file)).get_vocab()
    candidates = rare_tokens(counts, vocab, rc.augment_below)
    extra = replace_tokens(ids, candidates, rc.augment_share, rc.augment_tokens, rc.seed)
    return extra, teacher_embeddings(
        ctx, baseline, extra, f"augmented texts ({len(candidates)} rare tokens to draw from)"
    )
