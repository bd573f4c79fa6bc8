"""Reading a user's corpus or the shared data sets (../shared/data), and counting token frequencies.

The corpus — the user's (`--corpus`) or, where it exists, the shared data's train splits — feeds
token frequencies, the sensitivity estimate, smoothing's calibration and the distillation set; a
seeded held-out slice of it is kept from all of them for the fidelity evaluation. Test splits are
read by evaluation alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compression.errors import CorpusError

TREC_LABELS = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "numeric",
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


def read_pairs_file(path: Path) -> StsPairs:
    """An STS-style pairs file: the STS Benchmark's tab-separated rows (score col 4, sentences 5–6), or a
    CSV of sentence1, sentence2, score (stsb-multi-mt's layout; a header row is skipped)."""
    import csv

    path = _need(Path(path))
    text = path.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    s1, s2, scores = [], [], []
    if first.count("\t") >= 6:
        rows = ([c[5], c[6], c[4]] for c in (line.split("\t") for line in text.splitlines()) if len(c) >= 7)
    else:
        rows = csv.reader(text.splitlines())
    for row in rows:
        if len(row) < 3:
            continue
        try:
            score = float(row[2])
        except ValueError:
            continue  # a header
        s1.append(row[0].strip())
        s2.append(row[1].strip())
        scores.append(score)
    if not s1:
        raise CorpusError(f"{path} holds no sentence pairs (sentence1, sentence2, score)")
    return StsPairs(s1, s2, np.asarray(scores, dtype=np.float64))


def read_text_file(path: Path) -> list[str]:
    """A user corpus file: one text per non-empty line, .jsonl records with a "text" field, or an
    STS-style .csv of sentence pairs (both sentences of each pair)."""
    path = _need(Path(path))
    if path.suffix == ".csv":
        pairs = read_pairs_file(path)
        return [t for t in pairs.s1 + pairs.s2 if t]
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"corpus {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    lines = [ln.strip() for ln in raw.splitlines()]
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise CorpusError(f"{path}:{number}: not a JSON record ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CorpusError(f'{path}:{number}: a .jsonl corpus needs a string "text" field in every record')
            texts.append(record["text"].strip())
        lines = texts
    lines = [ln for ln in lines if ln]
    if not lines:
        raise CorpusError(f"corpus {path} is empty")
    return lines


CORPUS_SUFFIXES = (".txt", ".jsonl", ".text", ".tsv", ".csv", "")


def read_corpus(path: Path | list[Path]) -> list[str]:
    """A corpus file, a folder of them (.txt/.jsonl/.csv, read in name order), or a list of either;
    deduplicated in order."""
    if isinstance(path, (list, tuple)):
        return list(dict.fromkeys(t for p in path for t in read_corpus(p)))
    path = Path(path)
    if path.is_dir():
        files = sorted(
            f for f in path.rglob("*") if f.is_file() and f.suffix in CORPUS_SUFFIXES and not f.name.startswith(".")
        )
        if not files:
            raise CorpusError(f"corpus folder {path} holds no .txt or .jsonl file")
        texts = [t for f in files for t in read_text_file(f)]
    else:
        texts = read_text_file(path)
    return list(dict.fromkeys(texts))


HELD_OUT_SHARE = 0.05  # of the corpus, for the fidelity evaluation
HELD_OUT_MAX = 1000
HELD_OUT_MIN = 1


@dataclass(frozen=True)
class Corpus:
    """The texts training may see and the seeded slice it never sees."""

    train: list[str]
    held_out: list[str]
    source: str  # what the texts are, for the manifest

    def with_prompt(self, prompt: str) -> "Corpus":
        """Every text as the model is asked to embed it (an e5 model's "query: " before each)."""
        if not prompt:
            return self
        return Corpus([prompt + t for t in self.train], [prompt + t for t in self.held_out], self.source)

    @classmethod
    def split(cls, texts: list[str], source: str, seed: int = 0) -> "Corpus":
        if len(texts) < 2:
            raise CorpusError(f"corpus {source} has {len(texts)} text(s); at least 2 are needed (one is held out)")
        n_held = min(HELD_OUT_MAX, max(HELD_OUT_MIN, int(len(texts) * HELD_OUT_SHARE)))
        order = np.random.default_rng(seed + 7919).permutation(len(texts))  # its own stream, not the samples'
        held = set(order[:n_held].tolist())
        return cls([t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)], source)


def load_corpus(corpus: Path | list[Path] | None, data_dir: Path | None, seed: int = 0) -> Corpus:
    """The user's corpus, else the shared data's train splits where they exist, else a one-line error."""
    if corpus is not None:
        name = " ".join(map(str, corpus)) if isinstance(corpus, (list, tuple)) else str(corpus)
        return Corpus.split(read_corpus(corpus), name, seed)
    if data_dir is not None and has_train_splits(data_dir):
        return Corpus.split(train_sentences(data_dir), f"train splits of {data_dir}", seed)
    raise CorpusError(
        "no corpus: pass --corpus FILE (one text per line, .jsonl with a text field, or a folder of such files)"
    )


def has_train_splits(data_dir: Path) -> bool:
    return all(
        (Path(data_dir) / f).is_file()
        for f in ("stsbenchmark/sts-train.csv", "sst2/train.tsv", "trec/train_5500.label")
    )


def has_eval_data(data_dir: Path | None) -> bool:
    """STS-B test and SST-2 test: the test sentences fidelity is measured on, and STS-B's pairs."""
    return data_dir is not None and all(
        (Path(data_dir) / f).is_file() for f in ("stsbenchmark/sts-test.csv", "sst2/test.tsv")
    )


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
