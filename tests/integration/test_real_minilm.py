"""The real all-MiniLM-L6-v2: baseline export equals sentence-transformers; the default recipe with a short
recovery builds and meets the size targets."""

import numpy as np
import pytest

from common.manifest import Manifest
from common.onnx_encoder import OnnxEncoder
from compression.cli import main
from compression.corpus import read_sts
from compression.sources.load import default_model_dir
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow

RECIPES = """
[[variant]]
name = "minilm-l6"

[[variant]]
name = "minilm-l6-short"
baseline = "minilm-l6"
recover = { steps = 8, batch_size = 32, num_sentences = 512, anchor = 0.1 }
graph = { fuse_attention = true, remove_padding = true }
[variant.factorize]
method = "pq"
metric = "sensitivity"
metric_sentences = 64
rank = 348
subspaces = 87
codebook_size = 256
alpha = 0.75
[variant.quantize]
factors_int8 = true
positions_fp16 = true
encoder_int8 = true
smooth_alpha = 0.9
smooth_shared_qkv = true
decode_int8 = true

[[variant]]
name = "minilm-l6-served"
baseline = "minilm-l6"
graph = { fuse_attention = true, remove_padding = true }
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    out = tmp_path_factory.mktemp("real")
    (out / "recipes.toml").write_text(RECIPES)
    assert (
        main(
            [
                "build",
                "--recipes",
                str(out / "recipes.toml"),
                "--out",
                str(out),
                "--no-progress",
                "--data-dir",
                str(SHARED_DATA),
            ]
        )
        == 0
    )
    return out


def test_baseline_onnx_matches_sentence_transformers(built):
    from sentence_transformers import SentenceTransformer

    sts = read_sts(SHARED_DATA, "test")
    texts = sts.s1[:48] + sts.s2[:16] + ["", "a", "x " * 400]  # empty, tiny, and over-length inputs
    reference = SentenceTransformer(str(default_model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True, batch_size=16
    )
    ours = OnnxEncoder(built / "minilm-l6", max_length=256).encode(texts, batch_size=16)
    cos = (reference * ours).sum(1)
    assert cos.min() >= 0.9999, f"worst cosine {cos.min():.6f} at {texts[int(cos.argmin())][:40]!r}"


def test_baseline_manifest_measures_the_real_model(built):
    m = Manifest.read(built / "minilm-l6")
    assert m.params.embedding == 30522 * 384
    assert m.bytes.embedding == 30522 * 384 * 4
    assert 81.5 < m.quality.stsb_spearman < 82.5  # the reference figure is 82.03


def test_short_recovery_variant_is_small_and_sane(built):
    base, m = Manifest.read(built / "minilm-l6"), Manifest.read(built / "minilm-l6-short")
    assert base.bytes.embedding / m.bytes.embedding >= 16
    assert base.bytes.file / m.bytes.file >= 6
    assert m.quality.fidelity_mean > 0.9 and m.quality.stsb_spearman > 75
    assert np.isfinite(m.recipe["final_distill_loss"])


def test_serving_graph_is_exact_on_the_real_model(built):
    """The fp32 export with fused attention and no padding gives the plain export's vectors, batched
    with sentences of other lengths (empty and over-length ones included), and one at a time (the
    dense route)."""
    m = Manifest.read(built / "minilm-l6-served")
    assert m.graph == {"fused_attention": 6, "padding_removed": True, "dense_route": True, "skipped": None}
    assert Manifest.read(built / "minilm-l6-short").graph["padding_removed"] is True
    sts = read_sts(SHARED_DATA, "test")
    texts = sts.s1[:40] + ["", "a", "x " * 400]
    plain = OnnxEncoder(built / "minilm-l6", max_length=256).encode(texts, batch_size=16)
    served_encoder = OnnxEncoder(built / "minilm-l6-served", max_length=256)
    served = served_encoder.encode(texts, batch_size=16)
    assert np.abs(plain - served).max() < 1e-5
    alone = np.concatenate([served_encoder.encode([t]) for t in texts[:8] + texts[-3:]])
    assert np.abs(plain[list(range(8)) + [-3, -2, -1]] - alone).max() < 1e-5
    assert m.quality.fidelity_mean > 0.99999
