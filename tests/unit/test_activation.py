"""compression/encoder/activation.py: the exact GELU swapped for its tanh approximation, which onnxruntime
serves as one FastGelu kernel even in the smoothed, rewritten int8 graph."""

import collections
import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from compression.config import GraphConfig, QuantizeConfig
from compression.encoder.activation import tanh_gelu
from compression.encoder.smooth import smooth_encoder
from compression.export.onnx_export import check_parity, export_onnx
from compression.export.quantize import apply
from compression.export.serving_graph import rewrite
from compression.model import SentenceEncoder
from compression.sources.load import load_source


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


def _served_ops(path, tmp_path) -> collections.Counter:
    """Operator counts of the graph onnxruntime runs (after its fusions)."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def test_each_layers_gelu_is_swapped_and_close(src):
    bert = copy.deepcopy(src.bert)
    assert tanh_gelu(bert) == src.bert.config.num_hidden_layers
    assert tanh_gelu(bert) == 0  # nothing exact is left
    x = torch.linspace(-6, 6, 2001)
    exact, approx = (
        src.bert.encoder.layer[0].intermediate.intermediate_act_fn(x),
        bert.encoder.layer[0].intermediate.intermediate_act_fn(x),
    )
    gap = float((exact - approx).abs().max())
    assert 1e-5 < gap < 5e-4  # a different function, within the approximation's known bound


def test_torch_gelu_modules_are_swapped_and_others_left():
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.GELU(approximate="tanh"), nn.ReLU())
    assert tanh_gelu(model) == 1
    assert [type(m).__name__ for m in model] == ["Linear", "NewGELUActivation", "GELU", "ReLU"]


def test_served_int8_graph_runs_fastgelu_and_matches_torch(src, tmp_path):
    """The compressed recipe's order (swap, smooth, export, parity, rewrite, int8): the parity check
    against the swapped torch model is exact, and onnxruntime fuses every GELU into FastGelu."""
    bert = copy.deepcopy(src.bert)
    tanh_gelu(bert)
    rng = np.random.default_rng(0)
    smooth_encoder(bert, [list(rng.integers(5, src.vocab_size, 12)) for _ in range(8)], 0.9, share_qkv=True)
    enc = SentenceEncoder(bert)
    fp32, served = tmp_path / "fp32.onnx", tmp_path / "served.onnx"
    export_onnx(enc, fp32, src.vocab_size)
    assert max(r.max_abs_diff for r in check_parity(enc, fp32, src.vocab_size, src.max_seq_length)) < 1e-5
    rewrite(
        fp32, GraphConfig(fuse_attention=True, remove_padding=True, tanh_gelu=True), src.bert.config.num_attention_heads
    )
    check_parity(enc, fp32, src.vocab_size, src.max_seq_length)
    apply(QuantizeConfig(encoder_int8=True, smooth_alpha=0.9, smooth_shared_qkv=True, reduce_range=True), fp32, served)
    ops = _served_ops(served, tmp_path)
    assert ops["FastGelu"] == src.bert.config.num_hidden_layers
    assert not {"Erf", "Tanh", "Gelu", "BiasGelu"} & set(ops)
