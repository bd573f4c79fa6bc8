"""Export parity and each quantization switch on a tiny random BERT."""

import numpy as np
import onnx
import pytest
import torch

from common import contract
from common.onnx_encoder import make_session
from compression.errors import ConfigError, ToleranceError
from compression.export.measure import embedding_bytes
from compression.export.onnx_export import (
    PARITY_SHAPES,
    check_parity,
    export_onnx,
)
from compression.export.quantize import QuantizeConfig, apply
from compression.model import (
    SentenceEncoder,
    count_params,
    random_batch,
    with_factorized_embedding,
    word_embedding_matrix,
)
from compression.sources.load import load_source
from compression.table.factorize import FactorizeConfig, factorize


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


@pytest.fixture(scope="module")
def banded(src):
    E = word_embedding_matrix(src.bert)
    counts = np.arange(E.shape[0])[::-1].copy()
    f = factorize(E, FactorizeConfig(method="banded", rank=32, high_rows=60, low_rank=16), counts)
    return SentenceEncoder(with_factorized_embedding(src.bert, f)), f


def _run(path, ids, mask):
    return make_session(path).run(
        [contract.OUTPUT_EMBEDDING], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}
    )[0]


def test_baseline_export_parity(src, tmp_path):
    enc = SentenceEncoder(src.bert)
    export_onnx(enc, tmp_path / "m.onnx", src.vocab_size)
    results = check_parity(enc, tmp_path / "m.onnx", src.vocab_size, src.max_seq_length)
    # every shape was checked (lengths capped at the model's), and the fp32 graph is exact, not just close
    assert [r.shape for r in results] == [(b, min(s, src.max_seq_length)) for b, s in PARITY_SHAPES]
    assert max(r.max_abs_diff for r in results) < 1e-5
    sess = make_session(tmp_path / "m.onnx")
    assert [i.name for i in sess.get_inputs()] == [contract.INPUT_IDS, contract.ATTENTION_MASK]
    out = sess.get_outputs()[0]
    assert out.name == contract.OUTPUT_EMBEDDING and out.shape[1] == src.hidden_size


def test_banded_export_parity_and_dense_equivalence(src, banded, tmp_path):
    enc, f = banded
    export_onnx(enc, tmp_path / "b.onnx", src.vocab_size)
    check_parity(enc, tmp_path / "b.onnx", src.vocab_size, src.max_seq_length)
    table = enc.bert.embeddings.word_embeddings.weight.detach().numpy()
    np.testing.assert_allclose(table, f.reconstruct(), atol=1e-5)


def test_parity_mismatch_raises(src, banded, tmp_path):
    enc, _ = banded
    export_onnx(enc, tmp_path / "b.onnx", src.vocab_size)
    with pytest.raises(ToleranceError, match="cosine to torch"):
        check_parity(SentenceEncoder(src.bert), tmp_path / "b.onnx", src.vocab_size, src.max_seq_length)


@pytest.mark.parametrize(
    "config",
    [
        QuantizeConfig(table_bits=8),
        QuantizeConfig(table_bits=4, table_block=16),
        QuantizeConfig(encoder_int8=True),
        QuantizeConfig(table_bits=4, table_block=16, encoder_int8=True),
        QuantizeConfig(table_bits=4, table_block=16, b_fp16=True),
        QuantizeConfig(encoder_int8=True, encoder_block=16, positions_fp16=True),
    ],
    ids=lambda c: c.label,
)
def test_quantized_graphs_run_close_and_smaller(src, banded, tmp_path, config):
    enc, _ = banded
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(config, tmp_path / "fp32.onnx", tmp_path / "q.onnx")
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(0))
    ref, got = _run(tmp_path / "fp32.onnx", ids, mask), _run(tmp_path / "q.onnx", ids, mask)
    assert got.shape == ref.shape
    assert (ref * got).sum(1).min() > 0.95
    if config.table_bits:
        assert embedding_bytes(tmp_path / "q.onnx") < embedding_bytes(tmp_path / "fp32.onnx")
    if config.encoder_int8:
        assert (tmp_path / "q.onnx").stat().st_size < (tmp_path / "fp32.onnx").stat().st_size


def test_block_int8_is_what_the_fake_quant_simulates(tmp_path):
    """Recovery trains against the torch simulation of the block scheme; it must round as onnxruntime's
    MatMulNBits (accuracy level 4) does: on one MatMul with outlier activations, the simulation lands
    far closer to onnxruntime's answer than the exact product does."""
    from onnx import TensorProto, helper, numpy_helper

    from compression.export.quantize import quantize_encoder
    from compression.fake_quant import FakeQuantLinear

    rng = np.random.default_rng(0)
    K, N = 64, 48
    W_kn = rng.normal(0, 0.05, (K, N)).astype(np.float32)
    x = rng.normal(0, 1, (10, K)).astype(np.float32)
    x[:, 3] *= 20  # an outlier channel, as LayerNorm outputs have
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="/encoder/layer.0/MatMul")],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", N])],
        [numpy_helper.from_array(W_kn, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    quantize_encoder(tmp_path / "m.onnx", tmp_path / "q.onnx", block=16)
    assert [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node] == ["MatMulNBits"]
    y_ort = make_session(tmp_path / "q.onnx").run(["y"], {"x": x})[0]
    linear = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(W_kn.T))
        y_sim = FakeQuantLinear(linear, block=16)(torch.from_numpy(x)).numpy()
    err_exact = np.abs(x @ W_kn - y_ort).mean()
    err_sim = np.abs(y_sim - y_ort).mean()
    assert err_exact > 0  # quantization moved the answer at all
    assert err_sim < 0.05 * err_exact, (err_sim, err_exact)


def test_block_int8_answers_a_text_the_same_alone_or_batched(src, tmp_path):
    """Activations are quantized per row, so a text's vector does not depend on its batch-mates (dynamic
    int8 takes one range per batch, so there it does)."""
    enc = SentenceEncoder(src.bert)
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(QuantizeConfig(encoder_int8=True, encoder_block=16), tmp_path / "fp32.onnx", tmp_path / "q.onnx")
    ids, mask = random_batch(5, 24, src.vocab_size, np.random.default_rng(2))
    ids[1:, :20] = np.random.default_rng(3).integers(1, src.vocab_size, size=(4, 20))  # other batch-mates
    together = _run(tmp_path / "q.onnx", ids, mask)
    alone = _run(tmp_path / "q.onnx", ids[:1], mask[:1])
    np.testing.assert_allclose(together[0], alone[0], atol=2e-6)


def test_positions_fp16_halves_the_position_table(src, tmp_path):
    enc = SentenceEncoder(src.bert)
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(QuantizeConfig(positions_fp16=True), tmp_path / "fp32.onnx", tmp_path / "h.onnx")
    halves = [
        i for i in onnx.load(str(tmp_path / "h.onnx")).graph.initializer if i.data_type == onnx.TensorProto.FLOAT16
    ]
    assert [list(i.dims) for i in halves] == [[src.bert.config.max_position_embeddings, src.hidden_size]]
    saved = (tmp_path / "fp32.onnx").stat().st_size - (tmp_path / "h.onnx").stat().st_size
    assert (
        saved >= src.bert.config.max_position_embeddings * src.hidden_size * 2 - 512
    )  # 2 bytes a number, less the Cast node
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(0))
    ref, got = _run(tmp_path / "fp32.onnx", ids, mask), _run(tmp_path / "h.onnx", ids, mask)
    assert (ref * got).sum(1).min() > 0.9999


@pytest.mark.parametrize(
    "kwargs",
    [dict(encoder_block=16), dict(encoder_int8=True, encoder_block=24), dict(encoder_int8=True, encoder_block=8)],
)
def test_bad_encoder_block_refused(kwargs):
    with pytest.raises(ConfigError, match="encoder_block"):
        QuantizeConfig(**kwargs)


def test_b_fp16_halves_the_factor(src, banded, tmp_path):
    enc, _ = banded
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(QuantizeConfig(table_bits=4, table_block=16), tmp_path / "fp32.onnx", tmp_path / "q.onnx")
    apply(QuantizeConfig(table_bits=4, table_block=16, b_fp16=True), tmp_path / "fp32.onnx", tmp_path / "h.onnx")
    b_bytes = 32 * src.hidden_size * 4 + 16 * src.hidden_size * 4  # B and the low band's slice of it
    saved = embedding_bytes(tmp_path / "q.onnx") - embedding_bytes(tmp_path / "h.onnx")
    assert saved == b_bytes // 2
    halves = [
        i for i in onnx.load(str(tmp_path / "h.onnx")).graph.initializer if i.data_type == onnx.TensorProto.FLOAT16
    ]
    assert len(halves) == 2


@pytest.fixture(scope="module")
def pq(src):
    E = word_embedding_matrix(src.bert)
    counts = np.arange(E.shape[0])[::-1].copy()
    f = factorize(E, FactorizeConfig(method="pq", rank=src.hidden_size, subspaces=16, codebook_size=32), counts)
    return SentenceEncoder(with_factorized_embedding(src.bert, f)), f


def test_pq_export_reads_one_byte_codes_and_matches_torch(src, pq, tmp_path):
    enc, f = pq
    export_onnx(enc, tmp_path / "pq.onnx", src.vocab_size)
    check_parity(enc, tmp_path / "pq.onnx", src.vocab_size, src.max_seq_length)
    np.testing.assert_allclose(enc.bert.embeddings.word_embeddings.weight.detach().numpy(), f.reconstruct(), atol=1e-5)
    inits = {i.name: i for i in onnx.load(str(tmp_path / "pq.onnx")).graph.initializer}
    codes = [i for i in inits.values() if i.data_type == onnx.TensorProto.UINT8]
    assert [list(c.dims) for c in codes] == [[src.vocab_size, 16]]
    V, H = src.vocab_size, src.hidden_size
    assert count_params(enc.bert)["embedding"] == f.num_params == V * 16 + 16 * 32 * (H // 16) + H * H


def test_table_decodes_each_distinct_token_once(src, pq, tmp_path):
    """The exported table decodes the batch's distinct ids (onnx Unique), then gathers them back in
    place: a batch with repeated ids and padding answers what the full table would, row for row."""
    enc, f = pq
    export_onnx(enc, tmp_path / "pq.onnx", src.vocab_size)
    graph = onnx.load(str(tmp_path / "pq.onnx")).graph
    uniques = [n for n in graph.node if n.op_type == "Unique"]
    assert len(uniques) == 1 and uniques[0].input[0] == contract.INPUT_IDS
    codes_gather = next(n for n in graph.node if n.op_type == "Gather" and "codes" in n.input[0])
    assert codes_gather.input[1] == uniques[0].output[0]  # the codes are read for distinct ids only
    ids = torch.tensor([[5, 7, 5, 0, 0], [7, 7, 9, 5, 0]])
    dense = torch.from_numpy(f.reconstruct())[ids]
    torch.testing.assert_close(enc.bert.embeddings.word_embeddings(ids), dense, atol=1e-5, rtol=1e-5)


def test_pq_fp16_halves_centroids_and_b_and_refuses_table_bits(src, pq, tmp_path):
    from compression.recipes import VariantRecipe

    enc, _ = pq
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(QuantizeConfig(b_fp16=True, encoder_int8=True), tmp_path / "fp32.onnx", tmp_path / "h.onnx")
    H = src.hidden_size
    saved = embedding_bytes(tmp_path / "fp32.onnx") - embedding_bytes(tmp_path / "h.onnx")
    assert saved == (16 * 32 * (H // 16) + H * H) * 2  # centroids and B, 4 → 2 bytes each
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(0))
    ref, got = _run(tmp_path / "fp32.onnx", ids, mask), _run(tmp_path / "h.onnx", ids, mask)
    assert (ref * got).sum(1).min() > 0.95
    with pytest.raises(ConfigError, match="one byte"):
        VariantRecipe(
            "x", "base", FactorizeConfig(method="pq", rank=H, subspaces=16), quantize=QuantizeConfig(table_bits=4)
        )


def test_param_counts(src, banded):
    dense = count_params(src.bert)
    assert dense["embedding"] == src.vocab_size * src.hidden_size
    assert dense["total"] == dense["embedding"] + dense["encoder"]
    enc, f = banded
    assert count_params(enc.bert)["embedding"] == f.num_params


def test_torch_forward_matches_padding_invariance(src):
    enc = SentenceEncoder(src.bert)
    ids = torch.tensor([[2, 50, 60, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        a = enc(ids, mask)
        b = enc(ids[:, :4], mask[:, :4])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_pq_factors_int8_quarter_the_bytes_and_fold_at_load(src, pq, tmp_path):
    import onnxruntime as ort
    from onnx import numpy_helper

    enc, f = pq
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    apply(QuantizeConfig(factors_int8=True), tmp_path / "fp32.onnx", tmp_path / "q.onnx")
    V, H, M, K, d = src.vocab_size, src.hidden_size, 16, 32, src.hidden_size // 16
    # codes and their int64 group offsets, int8 centroids + a float scale per group and coordinate,
    # two int64 shapes, int8 B + a float scale per row
    assert embedding_bytes(tmp_path / "q.onnx") == (V * M + M * 8 + M * K * d + M * d * 4 + (3 + 2) * 8 + H * H + H * 4)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    (books,) = [n for n in inits if n.endswith("centroids.weight_int8")]
    scale = inits[books.replace("_int8", "_scale")]
    decoded = (inits[books].reshape(M, K, d) * scale).reshape(M * K, d)
    assert np.abs(decoded - f.codebooks.reshape(M * K, d)).max() <= scale.max() / 2 + 1e-7
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(0))
    ref, got = _run(tmp_path / "fp32.onnx", ids, mask), _run(tmp_path / "q.onnx", ids, mask)
    assert (ref * got).sum(1).min() > 0.999
    # onnxruntime folds the dequantization into float constants when it loads the model
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), opts, providers=["CPUExecutionProvider"])
    assert not [n.name for n in onnx.load(str(tmp_path / "loaded.onnx")).graph.node if "_dequant" in n.name]


def test_pq_decode_int8_is_one_integer_product_of_the_stored_codes(src, pq, tmp_path):
    """decode_int8: the gathered centroid codes feed MatMulIntegerToFloat unchanged (no activation
    quantized at run time); the product equals the int8 centroids times int8 B computed by hand, the
    weights stay within ±64 (no int16 pair can saturate on AVX2), and the embeddings stay close."""
    from onnx import numpy_helper

    from compression.export.quantize import (
        DECODE_WEIGHT_LEVELS,
        quantize_decode,
        symmetric_int8,
    )

    enc, f = pq
    export_onnx(enc, tmp_path / "fp32.onnx", src.vocab_size)
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (cname,) = [k for k in inits if k.endswith("centroids.weight")]
    C = inits[cname]
    B = inits[next(n for n in model.graph.node if n.op_type == "MatMul" and "/embeddings/" in n.name).input[1]]
    name = quantize_decode(model)
    node = next(n for n in model.graph.node if n.name == name)
    assert node.op_type == "MatMulIntegerToFloat"
    assert not [
        n for n in model.graph.node if n.op_type in ("DynamicQuantizeLinear", "MatMul") and "/embeddings/" in n.name
    ]
    after = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    codes, B_q, b_scale = after[cname + "_u8"], after[node.input[1]], after[node.input[3]]
    assert codes.dtype == np.uint8 and np.abs(B_q).max() <= DECODE_WEIGHT_LEVELS
    M, d = 16, C.shape[1]
    q, s = symmetric_int8(C.reshape(M, -1, d), axis=1)
    np.testing.assert_array_equal(codes.astype(np.int16) - 128, q.reshape(C.shape))
    row = np.stack([codes.reshape(M, -1, d)[m, 3] for m in range(M)]).reshape(-1)  # code 3 of every group
    exact = (q[:, 3] * s[:, 0]).reshape(-1) @ B  # what the fp32 decode of the int8 centroids gives
    got = ((row.astype(np.int32) - 128) @ B_q.astype(np.int32)) * b_scale
    assert np.abs(got - exact).max() <= 0.02 * np.abs(exact).max()

    q = QuantizeConfig(factors_int8=True, encoder_int8=True, reduce_range=True, decode_int8=True)
    apply(q, tmp_path / "fp32.onnx", tmp_path / "q.onnx")
    ids, mask = random_batch(4, 12, src.vocab_size, np.random.default_rng(0))
    ref, got = _run(tmp_path / "fp32.onnx", ids, mask), _run(tmp_path / "q.onnx", ids, mask)
    assert (ref * got).sum(1).min() > 0.99
    # served graph: the ids are packed and decoded directly, so the token types' constant row is
    # added to the decoded vectors themselves: it becomes the product's bias
    from compression.config import GraphConfig
    from compression.export.serving_graph import rewrite

    rewrite(
        tmp_path / "fp32.onnx",
        GraphConfig(fuse_attention=True, remove_padding=True),
        src.bert.config.num_attention_heads,
    )
    apply(q, tmp_path / "fp32.onnx", tmp_path / "served.onnx")
    served = onnx.load(str(tmp_path / "served.onnx"))
    (product,) = [n for n in served.graph.node if n.op_type == "MatMulIntegerToFloat" and "/embeddings/" in n.name]
    assert len(product.input) == 7 and "token_type" in product.input[6]
    assert (ref * _run(tmp_path / "served.onnx", ids, mask)).sum(1).min() > 0.99
    with pytest.raises(ConfigError, match="decode_int8 needs"):
        QuantizeConfig(decode_int8=True, encoder_int8=True)


def test_factor_storage_is_one_choice():
    with pytest.raises(ConfigError, match="choose one"):
        QuantizeConfig(b_fp16=True, factors_int8=True)
