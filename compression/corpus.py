"""Reading the shared data sets (../shared/data) and counting token frequencies.

Only train splits feed factorization weights, distillation and probes; test
splits are read by evaluation alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CorpusError

TREC_LABELS = {
    "ABBR": "abbreviation", "DESC": "description", "ENTY": "entity",
    "HUM": "human", "LOC": "location", "NUM": "numeric",
}


def default_data_dir() -> Path:
    """`../shared/data` beside the project root, overridable with EMBED_DATA_DIR."""
    env = os.environ.get("EMBED_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise CorpusError(f"data file not found: {path} (set --data-dir or EMBED_DATA_DIR)")
    return path


@dataclass(frozen=True)
class StsPairs:
    s1: list[str]
    s2: list[str]
    scores: np.ndarray


def read_sts(data_dir: Path, split: str) -> StsPairs:
    """STS-B split ('train', 'dev', 'test'): tab-separated, score col 4, sentences cols 5–6."""
    s1, s2, scores = [], [], []
    for line in _need(data_dir / "stsbenchmark" / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) < 7:
            continue
        scores.append(float(cols[4]))
        s1.append(cols[5])
        s2.append(cols[6])
    return StsPairs(s1, s2, np.asarray(scores, dtype=np.float64))


def read_sst2(data_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    """SST-2 split ('train', 'dev', 'test'): text<TAB>label (0 negative, 1 positive)."""
    texts, labels = [], []
    for line in _need(data_dir / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if label.strip() in {"0", "1"}:
            texts.append(text.strip())
            labels.append(int(label))
    return texts, np.asarray(labels, dtype=np.int64)


def read_trec(data_dir: Path, split: str) -> tuple[list[str], list[str]]:
    """TREC coarse classes ('train' or 'test'); Latin-1 lines 'COARSE:fine text'."""
    name = {"train": "train_5500.label", "test": "TREC_10.label"}[split]
    texts, labels = [], []
    for line in _need(data_dir / "trec" / name).read_bytes().decode("latin-1").splitlines():
        tag, _, text = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        if coarse in TREC_LABELS and text.strip():
            texts.append(text.strip())
            labels.append(TREC_LABELS[coarse])
    return texts, labels


def train_sentences(data_dir: Path) -> list[str]:
    """Every train-split sentence of the three data sets, deduplicated, in a fixed order."""
    sts = read_sts(data_dir, "train")
    sst, _ = read_sst2(data_dir, "train")
    trec, _ = read_trec(data_dir, "train")
    return list(dict.fromkeys(sts.s1 + sts.s2 + sst + trec))


def read_text_file(path: Path) -> list[str]:
    """A user corpus: one text per non-empty line."""
    lines = [ln.strip() for ln in _need(Path(path)).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise CorpusError(f"corpus {path} is empty")
    return lines


def token_counts(tokenizer_file: Path, texts: list[str], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in the texts (special tokens included once per text)."""
    from tokenizers import Tokenizer

    if not texts:
        raise CorpusError("corpus is empty: no text to count tokens over")
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    counts = np.zeros(vocab_size, dtype=np.int64)
    for enc in tok.encode_batch(texts):
        np.add.at(counts, np.asarray(enc.ids, dtype=np.int64), 1)
    return counts
