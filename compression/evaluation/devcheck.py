"""`python -m compression dev-check` — quality on the dev splits, for choosing a recipe's settings.

The manifest's figures are on test splits and only report the result; rank, α,
learning rates and the like are compared here instead, on STS-B dev pairs and
SST-2 dev sentences, so that no setting is tuned on a test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import contract
from common.fidelity import cosines, fidelity
from common.markdown import table
from common.onnx_encoder import OnnxEncoder
from compression.corpus import read_sst2, read_sts, token_counts, train_sentences
from compression.errors import ModelLayoutError
from compression.evaluation.evaluate import spearman_x100

COLUMNS = ("model", "stsb_dev_spearman", "fidelity_dev_mean", "fidelity_dev_p1")


def _encoder(model_dir: Path, threads: int) -> OnnxEncoder:
    if not (model_dir / contract.MODEL_FILE).is_file() or not (model_dir / contract.TOKENIZER_FILE).is_file():
        raise ModelLayoutError(
            f"{model_dir} is not a built model directory (needs {contract.MODEL_FILE} and {contract.TOKENIZER_FILE})"
        )
    return OnnxEncoder(model_dir, threads=threads)


RARITY_BANDS = ((0, 1), (1, 10), (10, 100), (100, None))  # train-split count of a sentence's rarest token
RARITY_COLUMNS = ("model", "rarest_token_train_count", "sentences", "fidelity_dev_mean", "share_of_infidelity")


def _dev_texts(data_dir: Path) -> tuple[list[str], int, np.ndarray]:
    """STS-B dev pairs (first sentences, then second) and SST-2 dev sentences; n pairs; gold scores."""
    sts = read_sts(data_dir, "dev")
    sst, _ = read_sst2(data_dir, "dev")
    return list(sts.s1) + list(sts.s2) + list(sst), len(sts.s1), sts.scores


def dev_quality(
    model_dirs: list[Path], baseline_dir: Path, data_dir: Path, threads: int = 0, by_rarity: bool = False
) -> tuple[list[dict], list[dict]]:
    """One row per model: STS-B dev Spearman ×100 and fidelity to the baseline on the dev sentences.

    With by_rarity, also the fidelity per band of how often a sentence's rarest token occurs in the
    train splits: a table's approximation errs most on rows distillation never saw, the encoder's int8
    on every sentence alike, so the bands tell the two apart.
    """
    texts, n, gold = _dev_texts(data_dir)
    base = _encoder(baseline_dir, threads).encode(texts)
    rarest = _rarest_token_counts(baseline_dir, texts, data_dir) if by_rarity else None
    rows, bands = [], []
    for model_dir in model_dirs:
        vecs = _encoder(model_dir, threads).encode(texts)
        mean, p1 = fidelity(vecs, base)
        rows.append(
            {
                "model": model_dir.name,
                "stsb_dev_spearman": round(spearman_x100(vecs[:n], vecs[n : 2 * n], gold), 2),
                "fidelity_dev_mean": round(mean, 5),
                "fidelity_dev_p1": round(p1, 5),
            }
        )
        if rarest is not None:
            bands += _rarity_rows(model_dir.name, cosines(vecs, base), rarest)
    return rows, bands


def _rarest_token_counts(model_dir: Path, texts: list[str], data_dir: Path) -> np.ndarray:
    """Per text: the train-split count of its rarest token (special tokens aside)."""
    from tokenizers import Tokenizer

    tokenizer_file = model_dir / contract.TOKENIZER_FILE
    tok = Tokenizer.from_file(str(tokenizer_file))
    counts = token_counts(tokenizer_file, train_sentences(data_dir), tok.get_vocab_size())
    special = set(tok.encode("").ids)  # [CLS], [SEP]
    return np.array(
        [min((counts[i] for i in enc.ids if i not in special), default=0) for enc in tok.encode_batch(texts)]
    )


def _band_label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"≥{lo}"
    return str(lo) if hi == lo + 1 else f"{lo}–{hi - 1}"


def _rarity_rows(name: str, cos: np.ndarray, rarest: np.ndarray) -> list[dict]:
    err = 1.0 - cos
    rows = []
    for lo, hi in RARITY_BANDS:
        pick = (rarest >= lo) & (rarest < hi if hi is not None else True)
        if not pick.any():
            continue
        rows.append(
            {
                "model": name,
                "rarest_token_train_count": _band_label(lo, hi),
                "sentences": int(pick.sum()),
                "fidelity_dev_mean": round(float(cos[pick].mean()), 5),
                "share_of_infidelity": round(float(err[pick].sum() / max(err.sum(), 1e-12)), 2),
            }
        )
    return rows


def dev_table(rows: list[dict]) -> str:
    return table(COLUMNS, rows)


def rarity_table(rows: list[dict]) -> str:
    return table(RARITY_COLUMNS, rows)
