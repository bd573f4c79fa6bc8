"""Classification heads: a linear probe per task, trained on each variant's own embeddings.

Tasks: `sentiment` (SST-2) and `question-type` (TREC coarse classes), or any
CSV/JSONL file of text and label. Regularisation strength is chosen on a
validation split carved from train (compression.evaluation.linear_probe), never on test; the
test split gives the accuracy and macro-F1 written with the head.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.heads import Head
from common.manifest import Manifest
from common.onnx_encoder import OnnxEncoder
from compression.corpus import TREC_LABELS, read_sst2, read_trec
from compression.errors import CorpusError
from compression.evaluation.linear_probe import fit_probe

SENTIMENT_LABELS = ["negative", "positive"]
SST2_TRAIN_SIZE = 6000  # a seeded sample of the 67k phrases: the probe saturates well before


@dataclass
class LabelledData:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]
    labels: list[str]
    source: dict[str, object]


def sentiment_task(data_dir: Path, seed: int = 0) -> LabelledData:
    train, y_train = read_sst2(data_dir, "train")
    pick = np.random.default_rng(seed).permutation(len(train))[:SST2_TRAIN_SIZE]
    test, y_test = read_sst2(data_dir, "test")
    return LabelledData(
        [train[i] for i in pick],
        [SENTIMENT_LABELS[y_train[i]] for i in pick],
        test,
        [SENTIMENT_LABELS[y] for y in y_test],
        SENTIMENT_LABELS,
        {"dataset": "SST-2", "train": f"{len(pick)} of sst2/train.tsv (seed {seed})", "test": "sst2/test.tsv"},
    )


def question_type_task(data_dir: Path) -> LabelledData:
    train, y_train = read_trec(data_dir, "train")
    test, y_test = read_trec(data_dir, "test")
    return LabelledData(
        train,
        y_train,
        test,
        y_test,
        list(TREC_LABELS.values()),
        {"dataset": "TREC coarse", "train": "trec/train_5500.label", "test": "trec/TREC_10.label"},
    )


# The standard heads: the task's data, and the file whose presence says that data exists.
STANDARD_TASKS = {
    "sentiment": (sentiment_task, "sst2/train.tsv"),
    "question-type": (question_type_task, "trec/train_5500.label"),
}


def standard_tasks(data_dir: Path, names: list[str] | None = None) -> dict[str, LabelledData]:
    """The named standard tasks (a missing file is a CorpusError), or with names None every task whose
    data exists in data_dir."""
    if names is None:
        names = [n for n, (_, marker) in STANDARD_TASKS.items() if (Path(data_dir) / marker).is_file()]
    return {name: STANDARD_TASKS[name][0](data_dir) for name in names}


def read_labelled_file(
    path: Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str]]:
    """A user's CSV (with a header) or JSONL file of text and label."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"labelled file not found: {path}")
    rows: list[dict] = []
    try:
        if path.suffix.lower() in {".jsonl", ".json"}:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise CorpusError(f"{path}:{n}: each line must be a JSON object")
                    rows.append(row)
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
                if missing:
                    raise CorpusError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
                rows = list(reader)
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"{path}: unreadable ({exc})") from exc
    if not rows:
        raise CorpusError(f"{path} has no rows")
    for n, row in enumerate(rows, 1):
        if text_column not in row or label_column not in row:
            raise CorpusError(f"{path}: row {n} lacks '{text_column}' or '{label_column}'")
    texts = [str(r[text_column]).strip() for r in rows]
    labels = [str(r[label_column]).strip() for r in rows]
    if any(not t for t in texts) or any(not lab for lab in labels):
        raise CorpusError(
            f"{path}: empty text or label in row "
            f"{next(i for i, (t, lab) in enumerate(zip(texts, labels), 1) if not t or not lab)}"
        )
    if len(set(labels)) < 2:
        raise CorpusError(f"{path}: only one class ({labels[0]!r}); a classifier needs at least two")
    return texts, labels


def user_task(path: Path, test_fraction: float = 0.2, seed: int = 0, **columns: str) -> LabelledData:
    texts, labels = read_labelled_file(path, **columns)
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = max(1, int(len(texts) * test_fraction))
    test, train = order[:cut], order[cut:]
    names = sorted(set(labels))
    return LabelledData(
        [texts[i] for i in train],
        [labels[i] for i in train],
        [texts[i] for i in test],
        [labels[i] for i in test],
        names,
        {"dataset": str(path), "train": f"{len(train)} rows", "test": f"{len(test)} held-out rows"},
    )


def train_head(name: str, encoder: OnnxEncoder, task: LabelledData, seed: int = 0) -> Head:
    from sklearn.metrics import f1_score

    index = {lab: i for i, lab in enumerate(task.labels)}
    y_train = np.asarray([index[lab] for lab in task.train_labels])
    y_test = np.asarray([index[lab] for lab in task.test_labels])
    if len(set(y_train.tolist())) < 2:
        raise CorpusError(f"head {name}: the training split has only one class")
    probe = fit_probe(encoder.encode(task.train_texts, progress=f"{name} head"), y_train, seed=seed)
    clf = probe.classifier
    # sklearn stores one row for two classes (a sigmoid); write it as the equivalent 2-way softmax.
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.asarray([-intercept[0] / 2, intercept[0] / 2])
    W = np.zeros((len(task.labels), coef.shape[1]), dtype=np.float32)
    b = np.full(len(task.labels), -1e4, dtype=np.float32)  # a label absent from train is never predicted
    W[clf.classes_] = coef
    b[clf.classes_] = intercept
    head = Head(name, task.labels, W, b, trained_on=task.source | {"C": probe.C, "val_accuracy": probe.val_accuracy})
    pred = head.probabilities(encoder.encode(task.test_texts)).argmax(1)
    head.metrics = {
        "accuracy": round(float((pred == y_test).mean() * 100), 2),
        "macro_f1": round(float(f1_score(y_test, pred, average="macro") * 100), 2),
    }
    return head


def add_heads(model_dir: Path, tasks: dict[str, LabelledData], threads: int = 0) -> Manifest:
    """Train each task's head on this variant's embeddings; record them in the manifest."""
    manifest = Manifest.read(model_dir)
    encoder = OnnxEncoder(
        model_dir, max_length=manifest.max_seq_length, threads=threads, prompt=manifest.default_prompt
    )  # as the service embeds what /classify gets
    for name, task in tasks.items():
        head = train_head(name, encoder, task)
        head.save(model_dir / "heads")
        manifest.quality.heads[name] = head.metrics
        if name not in manifest.heads:
            manifest.heads.append(name)
    manifest.write(model_dir)
    return manifest
