"""SmoothQuant-style smoothing on a tiny random BERT: the fp32 function is unchanged, the graph exports
with parity, and the int8 encoder sees flatter activations."""

import copy

import numpy as np
import onnx
import pytest
import torch

from common import contract
from common.onnx_encoder import make_session
from compression.encoder.smooth import SmoothedLinear, smooth_encoder
from compression.errors import ConfigError
from compression.export.onnx_export import check_parity, export_onnx, random_batch
from compression.export.quantize import QuantizeConfig, apply
from compression.model import SentenceEncoder
from compression.sources.load import load_source
from tests.tiny import random_id_rows


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


def test_smoothing_keeps_the_fp32_function_and_exports_with_parity(src, tmp_path):
    bert = copy.deepcopy(src.bert)
    before = SentenceEncoder(copy.deepcopy(src.bert)).eval()
    n = smooth_encoder(bert, random_id_rows(src.vocab_size, 40), alpha=0.9)
    after = SentenceEncoder(bert).eval()
    linears = [m for m in bert.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert n == len(linears) == 6 * bert.config.num_hidden_layers
    # the attention's output projection has its division folded into the value projection: no wrapper
    assert all(
        isinstance(m, SmoothedLinear) != name.endswith("attention.output.dense")
        for name, m in bert.encoder.named_modules()
        if name.endswith(("query", "key", "value", "dense"))
    )
    ids, mask = (torch.from_numpy(a) for a in random_batch(3, 12, src.vocab_size, np.random.default_rng(0)))
    with torch.no_grad():
        torch.testing.assert_close(after(ids, mask), before(ids, mask), atol=1e-5, rtol=1e-4)
    export_onnx(after, tmp_path / "m.onnx", src.vocab_size)
    check_parity(after, tmp_path / "m.onnx", src.vocab_size, src.max_seq_length)  # raises on a mismatch
    # the exported smoothed graph answers what the unsmoothed model answers
    got = make_session(tmp_path / "m.onnx").run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    np.testing.assert_allclose(got, before(ids, mask).detach().numpy(), atol=1e-5)


def _input_range_spread(bert, module_path: str, ids: list[list[int]]) -> float:
    """max / min over channels of each channel's max |x| at one linear's input, over the sentences."""
    seen = []
    hook = bert.encoder.get_submodule(module_path).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].abs().flatten(0, -2).amax(0))
    )
    with torch.no_grad():
        for row in ids:
            t = torch.tensor([row])
            bert(input_ids=t, attention_mask=torch.ones_like(t), token_type_ids=torch.zeros_like(t))
    hook.remove()
    per_channel = torch.stack(seen).amax(0)
    return float(per_channel.max() / per_channel.min())


def test_alpha_one_gives_every_input_channel_the_same_range(src):
    """α = 1 divides each input channel by its own calibration maximum: on the calibration sentences
    every channel then spans the same range, which is what a per-tensor int8 scale wants."""
    calibration = random_id_rows(src.vocab_size, 40)
    bert = copy.deepcopy(src.bert)
    plain = _input_range_spread(bert, "layer.0.intermediate.dense", calibration)
    smooth_encoder(bert, calibration, alpha=1.0, batch_size=1)
    smoothed = _input_range_spread(bert, "layer.0.intermediate.dense.linear", calibration)
    assert plain > 1.5
    assert smoothed == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [dict(smooth_alpha=0.0, encoder_int8=True), dict(smooth_alpha=1.5, encoder_int8=True), dict(smooth_alpha=0.9)],
)
def test_bad_smoothing_settings_are_refused(kwargs):
    with pytest.raises(ConfigError, match="smooth_alpha"):
        QuantizeConfig(**kwargs)


def test_shared_qkv_scale_keeps_the_function_and_quantizes_that_input_once(src, tmp_path):
    """With share_qkv each attention's query, key and value share one scale tensor; the export then has one
    Mul for the three (merged before quantizing), so int8 quantizes that input once: 4 dynamic
    quantizations per layer instead of 6, and the int8 graph stays close to fp32."""
    calibration = random_id_rows(src.vocab_size, 40)
    before = SentenceEncoder(copy.deepcopy(src.bert)).eval()
    graphs = {}
    for share in (False, True):
        bert = copy.deepcopy(src.bert)
        smooth_encoder(bert, calibration, alpha=0.9, share_qkv=share)
        after = SentenceEncoder(bert).eval()
        ids, mask = (torch.from_numpy(a) for a in random_batch(3, 12, src.vocab_size, np.random.default_rng(0)))
        with torch.no_grad():
            torch.testing.assert_close(after(ids, mask), before(ids, mask), atol=1e-5, rtol=1e-4)
        attention = bert.encoder.layer[0].attention
        q, k, v = (getattr(attention.self, n).inv_scale for n in ("query", "key", "value"))
        assert (q is k is v) == share and isinstance(attention.output.dense, torch.nn.Linear)
        export_onnx(after, tmp_path / f"{share}.onnx", src.vocab_size)
        apply(
            QuantizeConfig(encoder_int8=True, smooth_alpha=0.9, smooth_shared_qkv=share),
            tmp_path / f"{share}.onnx",
            tmp_path / f"{share}-int8.onnx",
        )
        graphs[share] = onnx.load(str(tmp_path / f"{share}-int8.onnx"))
    layers = src.bert.config.num_hidden_layers
    for share, per_layer, muls in ((False, 6, 5), (True, 4, 3)):
        assert sum(n.op_type == "DynamicQuantizeLinear" for n in graphs[share].graph.node) == per_layer * layers
        # smoothing Muls: query/key/value (one when shared), the FFN's two; none before the attention's output
        assert _smoothing_muls(graphs[share]) == muls * layers
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(1))
    ref = before(*(torch.from_numpy(a) for a in (ids, mask))).detach().numpy()
    got = make_session(tmp_path / "True-int8.onnx").run(
        [contract.OUTPUT_EMBEDDING], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}
    )[0]
    assert (ref * got).sum(1).min() > 0.99


def _smoothing_muls(model: onnx.ModelProto) -> int:
    scales = {i.name for i in model.graph.initializer if "inv_scale" in i.name}
    return sum(n.op_type == "Mul" and any(x in scales for x in n.input) for n in model.graph.node)


def test_unsmoothed_ffn_output_keeps_the_function_and_drops_its_mul(src, tmp_path):
    """ffn_output=False leaves each layer's FFN-out linear (input: GELU's output) as it was, so its
    Mul is gone from the graph; the fp32 function is the same either way."""
    bert = copy.deepcopy(src.bert)
    before = SentenceEncoder(copy.deepcopy(src.bert)).eval()
    layers = src.bert.config.num_hidden_layers
    assert (
        smooth_encoder(bert, random_id_rows(src.vocab_size, 40), alpha=0.9, share_qkv=True, ffn_output=False)
        == 5 * layers
    )
    assert type(bert.encoder.layer[0].output.dense) is torch.nn.Linear
    assert isinstance(bert.encoder.layer[0].intermediate.dense, SmoothedLinear)
    after = SentenceEncoder(bert).eval()
    ids, mask = (torch.from_numpy(a) for a in random_batch(3, 12, src.vocab_size, np.random.default_rng(0)))
    with torch.no_grad():
        torch.testing.assert_close(after(ids, mask), before(ids, mask), atol=1e-5, rtol=1e-4)
    export_onnx(after, tmp_path / "m.onnx", src.vocab_size)
    apply(
        QuantizeConfig(encoder_int8=True, smooth_alpha=0.9, smooth_shared_qkv=True, smooth_ffn_output=False),
        tmp_path / "m.onnx",
        tmp_path / "m-int8.onnx",
    )
    assert _smoothing_muls(onnx.load(str(tmp_path / "m-int8.onnx"))) == 2 * layers


def test_shared_qkv_needs_smoothing():
    with pytest.raises(ConfigError, match="smooth_shared_qkv needs smooth_alpha"):
        QuantizeConfig(encoder_int8=True, smooth_shared_qkv=True)
    with pytest.raises(ConfigError, match="smooth_ffn_output=false needs smooth_alpha"):
        QuantizeConfig(encoder_int8=True, smooth_ffn_output=False)


def test_min_ratio_smooths_only_inputs_with_outliers(src):
    """smooth_min_ratio: an input whose largest channel maximum is under min_ratio times the median one
    keeps no Mul (its linear stays plain); the folded attention output is smoothed regardless; the
    fp32 function is the same."""
    from torch import nn

    from compression.encoder.smooth import _input_maxima, outlier_ratio

    calibration = random_id_rows(src.vocab_size, 40)
    linears = {n: m for n, m in src.bert.encoder.named_modules() if isinstance(m, nn.Linear)}
    ratios = {n: outlier_ratio(m) for n, m in _input_maxima(src.bert, linears, calibration, 64).items()}
    wrapped = [n for n in ratios if not n.endswith("attention.output.dense")]
    threshold = float(np.median([ratios[n] for n in wrapped]))
    bert = copy.deepcopy(src.bert)
    before = SentenceEncoder(copy.deepcopy(src.bert)).eval()
    n = smooth_encoder(bert, calibration, alpha=0.9, min_ratio=threshold)
    smoothed = {name for name, m in bert.encoder.named_modules() if isinstance(m, SmoothedLinear)}
    expected = {name for name in wrapped if ratios[name] >= threshold}
    assert smoothed == expected and 0 < len(expected) < len(wrapped)
    assert n == len(expected) + src.bert.config.num_hidden_layers  # + each folded attention output
    ids, mask = (torch.from_numpy(a) for a in random_batch(3, 12, src.vocab_size, np.random.default_rng(0)))
    with torch.no_grad():
        torch.testing.assert_close(SentenceEncoder(bert).eval()(ids, mask), before(ids, mask), atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="smooth_min_ratio"):
        QuantizeConfig(encoder_int8=True, smooth_alpha=0.9, smooth_min_ratio=0.5)
