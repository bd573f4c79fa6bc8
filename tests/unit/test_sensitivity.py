"""The sensitivity metric on a tiny random BERT, and factorization in that metric."""

import numpy as np
import pytest
import torch

from compression.errors import ConfigError
from compression.model import word_embedding_matrix
from compression.sources.load import load_source
from compression.table.factorize import FactorizeConfig, factorize, token_weights
from compression.table.metric import metric_error, metric_root
from compression.table.sensitivity import estimate_metric


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


@pytest.fixture(scope="module")
def sentences(src):
    rng = np.random.default_rng(0)
    return [list(rng.integers(5, src.vocab_size, size=int(n))) for n in rng.integers(3, 12, size=24)]


@pytest.fixture(scope="module")
def G(src, sentences):
    return estimate_metric(src.bert, sentences, probes=8, batch_size=8)


def test_metric_is_psd_and_blind_to_what_layernorm_removes(src, G):
    H = src.hidden_size
    assert G.shape == (H, H)
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-9 * np.trace(G)
    ones = np.ones(H) / np.sqrt(H)
    # Adding c·1 to a token's embedding shifts only its mean, which the first LayerNorm subtracts.
    assert ones @ G @ ones < 1e-6 * np.trace(G) / H
    assert not any(p.grad is not None for p in src.bert.parameters())  # the model's weights took no gradient


def test_metric_predicts_how_far_a_perturbation_moves_the_sentence(src, sentences, G):
    """A small δ added to one token's input embedding moves the sentence embedding by ‖J_t δ‖, whose
    square averages δᵀ G δ over tokens: measured and predicted agree on average."""
    from common.onnx_encoder import pad_ids
    from compression.table.sensitivity import sentence_embedding_of_inputs

    ids, mask = (torch.from_numpy(a) for a in pad_ids(sentences))
    lengths = mask.sum(1)
    table = src.bert.embeddings.word_embeddings.weight.detach()
    rng = np.random.default_rng(3)
    measured, predicted = [], []
    with torch.no_grad():
        x = table[ids]
        base = sentence_embedding_of_inputs(src.bert, x, mask)
        for _ in range(8):
            delta = rng.normal(0, 1e-3, (len(sentences), src.hidden_size))
            moved_x = x.clone()
            for b, n in enumerate(lengths.tolist()):
                moved_x[b, int(rng.integers(n))] += torch.from_numpy(delta[b]).float()
            moved = sentence_embedding_of_inputs(src.bert, moved_x, mask)
            measured += ((moved - base) ** 2).sum(1).tolist()
            predicted += np.einsum("bh,hk,bk->b", delta, G, delta).tolist()
    ratio = np.mean(measured) / np.mean(predicted)
    assert 0.5 < ratio < 2, ratio


def test_factorizing_in_the_metric_lowers_the_metric_error(src, G):
    E = word_embedding_matrix(src.bert)
    counts = np.arange(E.shape[0])[::-1].copy()
    w = token_weights(counts, 0.5, 10.0)
    plain = factorize(E, FactorizeConfig(method="weighted", rank=16, alpha=0.5), counts)
    sens = factorize(E, FactorizeConfig(method="weighted", rank=16, alpha=0.5, metric="sensitivity"), counts, G)
    # Weighted SVD of E·G^{1/2} is the exact minimiser of the G-weighted error (up to the eigenvalue floor).
    _, floor_inv = metric_root(G)
    assert metric_error(E, sens.reconstruct(), w, G) < metric_error(E, plain.reconstruct(), w, G)
    assert np.isfinite(floor_inv).all()


def test_sensitivity_metric_needs_its_matrix(src):
    E = word_embedding_matrix(src.bert)
    with pytest.raises(ConfigError, match="needs a"):
        factorize(E, FactorizeConfig(method="svd", rank=8, metric="sensitivity"), None, None)
    with pytest.raises(ConfigError, match="unknown metric"):
        FactorizeConfig(metric="cosine")
