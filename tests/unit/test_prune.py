"""FFN pruning on a tiny random BERT: the kept width, the refit absorbing what dropped neurons carried,
and an export with parity."""

import copy

import numpy as np
import pytest
import torch

from compression.config import PruneConfig
from compression.encoder.prune import kept_neurons, prune_ffn
from compression.errors import ConfigError
from compression.export.onnx_export import check_parity, export_onnx, random_batch
from compression.model import SentenceEncoder
from compression.sources.load import load_source
from tests.tiny import random_id_rows


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


def _outputs(bert, vocab: int) -> torch.Tensor:
    ids, mask = (torch.from_numpy(a) for a in random_batch(4, 14, vocab, np.random.default_rng(1)))
    with torch.no_grad():
        return SentenceEncoder(bert).eval()(ids, mask)


def test_kept_neurons_round_to_blocks_of_32():
    assert kept_neurons(1536, 0.917) == 1408
    assert kept_neurons(1536, 1.0) == 1536
    assert kept_neurons(64, 0.1) == 32  # never fewer than one block
    assert kept_neurons(1536, 0.99) == 1536


def test_constant_neurons_are_dropped_and_their_output_moves_into_the_bias(src):
    bert = copy.deepcopy(src.bert)
    half = bert.config.intermediate_size // 2
    with torch.no_grad():
        for layer in bert.encoder.layer:
            # the second half of the neurons: no input weights, so a constant GELU(bias) per neuron
            layer.intermediate.dense.weight[half:] = 0
            layer.intermediate.dense.bias[half:] = torch.linspace(0.5, 2.0, half)
            layer.output.dense.weight[:, half:] *= 5  # large columns: a ranking by weight alone would keep them
    before = _outputs(bert, src.vocab_size)
    kept = prune_ffn(bert, random_id_rows(src.vocab_size, 60), share=0.5, ridge=0.0)
    assert kept == half == bert.config.intermediate_size
    for layer in bert.encoder.layer:
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == half
        assert torch.count_nonzero(layer.intermediate.dense.weight.abs().sum(1)) == half  # the varying ones kept
    torch.testing.assert_close(_outputs(bert, src.vocab_size), before, atol=2e-4, rtol=1e-3)


def test_refit_beats_dropping_and_the_pruned_model_exports_with_parity(src, tmp_path):
    before = _outputs(src.bert, src.vocab_size)
    ids = random_id_rows(src.vocab_size, 60)
    refit = copy.deepcopy(src.bert)
    prune_ffn(refit, ids, share=0.5)
    dropped = copy.deepcopy(refit)  # same kept neurons, the original output projection without refit
    with torch.no_grad():
        for layer, orig, new in zip(dropped.encoder.layer, src.bert.encoder.layer, refit.encoder.layer):
            keep = [
                int(np.flatnonzero((orig.intermediate.dense.weight == row).all(1))[0])
                for row in new.intermediate.dense.weight
            ]
            layer.output.dense.weight.copy_(orig.output.dense.weight[:, keep])
            layer.output.dense.bias.copy_(orig.output.dense.bias)

    def err(bert) -> float:
        return float(1 - torch.nn.functional.cosine_similarity(_outputs(bert, src.vocab_size), before).mean())

    assert err(refit) < err(dropped)
    encoder = SentenceEncoder(refit).eval()
    export_onnx(encoder, tmp_path / "m.onnx", src.vocab_size)
    check_parity(encoder, tmp_path / "m.onnx", src.vocab_size, src.max_seq_length)  # raises on a mismatch


def test_keep_all_leaves_the_model_as_it_was(src):
    bert = copy.deepcopy(src.bert)
    assert prune_ffn(bert, random_id_rows(src.vocab_size, 60), share=1.0) == src.bert.config.intermediate_size
    torch.testing.assert_close(_outputs(bert, src.vocab_size), _outputs(src.bert, src.vocab_size))


@pytest.mark.parametrize("values", [{"ffn_keep": 0.0}, {"ffn_keep": 1.5}, {"sentences": 0}, {"ridge": -1.0}])
def test_prune_settings_out_of_range_are_refused(values):
    with pytest.raises(ConfigError):
        PruneConfig(**values)
