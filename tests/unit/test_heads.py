"""Heads on a tiny model: trained above chance, stored and reloaded intact, bad files refused."""

import json

import numpy as np
import pytest

from common.heads import Head, load_heads
from common.onnx_encoder import OnnxEncoder
from compression.cli import main
from compression.errors import CorpusError
from compression.evaluation.heads import (
    read_labelled_file,
    sentiment_task,
    train_head,
    user_task,
)


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return OnnxEncoder(tiny_models / "tiny", max_length=48)


def test_head_learns_separable_sentiment(encoder, tiny_data_dir):
    head = train_head("sentiment", encoder, sentiment_task(tiny_data_dir))
    assert head.labels == ["negative", "positive"]
    assert head.metrics["accuracy"] > 75  # cue words make it separable; chance is ~50
    assert 0 < head.metrics["macro_f1"] <= 100 and head.trained_on["C"] > 0


def test_heads_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    head = Head(
        "topic",
        ["b", "a", "c"],
        rng.standard_normal((3, 4)).astype(np.float32),
        np.zeros(3, np.float32),
        {"accuracy": 50.0},
    )
    head.save(tmp_path / "heads")
    back = load_heads(tmp_path)["topic"]
    assert back.labels == ["b", "a", "c"]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(back.probabilities(x), head.probabilities(x), rtol=1e-6)
    np.testing.assert_allclose(back.probabilities(x).sum(1), 1.0, rtol=1e-6)


def test_manifest_lists_heads(tiny_models):
    m = json.loads((tiny_models / "tiny-fact" / "manifest.json").read_text())
    assert set(m["heads"]) == {"sentiment", "question-type"}
    assert set(m["quality"]["heads"]["question-type"]) == {"accuracy", "macro_f1"}


def test_user_file_trains(tmp_path, encoder):
    path = tmp_path / "mine.jsonl"
    rows = [{"text": f"good great fun {i}", "label": "yes"} for i in range(20)]
    rows += [{"text": f"bad awful boring {i}", "label": "no"} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    head = train_head("mine", encoder, user_task(path))
    assert head.labels == ["no", "yes"] and head.metrics["accuracy"] >= 75


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("a.csv", "text,category\nhello,x\n", "missing column"),
        ("b.csv", "text,label\nhello,x\nthere,x\n", "only one class"),
        ("c.csv", "", "missing column"),
        ("d.jsonl", "", "has no rows"),
        ("e.jsonl", '{"text": "a", "label": "x"}\n{not json', "unreadable"),
        ("f.csv", "text,label\n,x\nhi,y\n", "empty text or label"),
    ],
)
def test_bad_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_labelled_file(path)


def test_cli_bad_file_is_one_line_error(tmp_path, tiny_models, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly,one\n")
    assert main(["heads", "--out", str(tiny_models), "--train-file", str(bad), "--name", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "only one class" in err and "\n" not in err
