"""The real all-MiniLM-L6-v2 as a user who has only its fp32 ONNX export would bring it: imported from the
graph, checked against it, compressed in one command with a short recovery, and served beside its baseline."""

import shutil

import numpy as np
import pytest

from common.manifest import Manifest
from common.onnx_encoder import OnnxEncoder
from compression.cli import main
from compression.corpus import read_sts, train_sentences
from compression.sources.load import default_model_dir, load_source
from tests.conftest import SHARED_DATA
from tests.tiny import export_hf_onnx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    root = tmp_path_factory.mktemp("own")
    repo = root / "all-MiniLM-L6-v2"
    src = load_source(default_model_dir(), scratch=root / "scratch")
    export_hf_onnx(src.bert, repo / "onnx" / "model.onnx")  # token states and pooler output, as optimum exports it
    for name in ("tokenizer.json", "sentence_bert_config.json"):  # as sentence-transformers' ONNX backend lays it out
        shutil.copy(default_model_dir() / name, repo / name)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(train_sentences(SHARED_DATA)[:3000]) + "\n")
    out = root / "out"
    rc = main(
        [
            "compress",
            "--model",
            str(repo),
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--data-dir",
            str(root / "no-data"),
            "--target-ratio",
            "16",  # one size: the int8 search is for recoveries longer than this test's
            "--set",
            "recover.steps=8",
            "--set",
            "recover.batch_size=32",
            "--set",
            "recover.num_sentences=256",
            "--set",
            "factorize.metric_sentences=64",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out


def test_the_imported_baseline_answers_what_sentence_transformers_answers(built):
    from sentence_transformers import SentenceTransformer

    sts = read_sts(SHARED_DATA, "test")
    texts = sts.s1[:40] + ["", "a", "x " * 400]
    ref = SentenceTransformer(str(default_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    base = Manifest.read(built / "all-minilm-l6-v2")
    assert base.source["kind"] == "onnx" and (base.source["layers"], base.source["heads"]) == (6, 12)
    ours = OnnxEncoder(built / "all-minilm-l6-v2", max_length=base.max_seq_length).encode(texts)
    assert (ref * ours).sum(1).min() >= 0.9999


def test_the_compressed_variant_is_small_and_sane(built):
    base, fact = Manifest.read(built / "all-minilm-l6-v2"), Manifest.read(built / "all-minilm-l6-v2-fact")
    assert fact.baseline == "all-minilm-l6-v2"
    assert base.bytes.embedding / fact.bytes.embedding >= 16
    assert fact.quality.fidelity_mean > 0.9 and np.isfinite(fact.recipe["final_distill_loss"])
    assert fact.evaluations["fidelity"]["data"].startswith("held-out slice of")
