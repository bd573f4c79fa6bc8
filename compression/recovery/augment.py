"""Distillation data for the tokens the train splits never show.

The distillation loss only reaches a table row through sentences that contain
its token: about a fifth of the dev sentences hold a token that no train
sentence has, and those sentences carry most of a factorized model's error
(`dev-check --by-rarity`). Augmented copies of train sentences, with a few
positions swapped for rare vocabulary tokens, put those rows in context; the
teacher embeds the copies like any other sentence, so no text from a dev or
test split is involved (the same idea as TinyBERT's word-replacement
augmentation, here aimed at rare tokens rather than synonyms).
"""

from __future__ import annotations

import re

import numpy as np

# BERT vocabularies reserve [unused0] … rows that no text tokenizes to: no point training them.
_RESERVED = re.compile(r"^\[unused\d+\]$|^\[[A-Z]+\]$")


def rare_tokens(counts_v: np.ndarray, vocab: dict[str, int], below: int) -> np.ndarray:
    """Ids of real vocabulary tokens seen fewer than `below` times in the corpus (specials and
    reserved [unusedN] rows left out)."""
    real = np.zeros(len(counts_v), dtype=bool)
    for token, idx in vocab.items():
        if idx < len(real) and not _RESERVED.match(token):
            real[idx] = True
    return np.flatnonzero(real & (counts_v < below))


def replace_tokens(
    ids: list[list[int]], candidates: np.ndarray, share: float, per_sentence: int, seed: int
) -> list[list[int]]:
    """Copies of a seeded `share` of the sentences, each with up to `per_sentence` inner positions
    (never the first and last, [CLS] and [SEP]) replaced by tokens drawn uniformly from candidates."""
    if not 0 <= share <= 1 or per_sentence < 1:
        raise ValueError(f"augmentation share must be in [0, 1] and per_sentence ≥ 1, got {share}, {per_sentence}")
    if share == 0 or len(candidates) == 0:
        return []
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ids), size=int(round(share * len(ids))), replace=False)
    out = []
    for i in picked:
        row = list(ids[i])
        inner = len(row) - 2
        if inner < 1:
            continue
        for pos in rng.choice(inner, size=min(per_sentence, inner), replace=False):
            row[1 + int(pos)] = int(candidates[rng.integers(len(candidates))])
        out.append(row)
    return out
