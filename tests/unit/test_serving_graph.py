"""Serving rewrites (compression/export/serving_graph.py) on a tiny random BERT: exact, and refused where unsafe."""

import collections

import numpy as np
import onnx
import pytest
from onnx import helper

from common import contract
from common.onnx_encoder import make_session
from compression.config import GraphConfig, QuantizeConfig
from compression.encoder.smooth import smooth_encoder
from compression.errors import ConfigError
from compression.export.onnx_export import check_parity, export_onnx, random_batch
from compression.export.quantize import apply
from compression.export.serving_graph import (
    UnsupportedGraph,
    fuse_attention,
    remove_padding,
    rewrite,
)
from compression.model import SentenceEncoder
from compression.sources.load import load_source


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


@pytest.fixture(scope="module")
def exported(src, tmp_path_factory):
    path = tmp_path_factory.mktemp("serving") / "m.onnx"
    enc = SentenceEncoder(src.bert)
    export_onnx(enc, path, src.vocab_size)
    return enc, path


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def _embed(path, ids, mask):
    return make_session(path).run(
        [contract.OUTPUT_EMBEDDING], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}
    )[0]


@pytest.mark.parametrize("unpad", [False, True])
def test_rewrite_is_exact_on_padded_batches(src, exported, tmp_path, unpad):
    enc, path = exported
    out = tmp_path / "r.onnx"
    out.write_bytes(path.read_bytes())
    report = rewrite(out, GraphConfig(fuse_attention=True, remove_padding=unpad), src.bert.config.num_attention_heads)
    assert report.skipped is None and report.fused_attention == src.bert.config.num_hidden_layers
    model = onnx.load(str(out))
    ops = _ops(model)
    assert ops["MultiHeadAttention"] == src.bert.config.num_hidden_layers and ops["Softmax"] == 0
    assert ("NonZero" in ops) == unpad
    # the batch's token ids are packed, not its embeddings: the table reads T ids, the LayerNorm T rows
    packs = [n.input[0] for n in model.graph.node if n.op_type == "GatherND"]
    assert (contract.INPUT_IDS in packs) == unpad
    assert not any(n.op_type == "LayerNormalization" for n in model.graph.node if n.output[0] in packs)
    assert "ConstantOfShape" not in ops  # the token types' Gather of zeros is its constant row
    # without padding in the token stream the attention needs no mask (onnxruntime's flash path): the
    # padding keys come from a row whose extra coordinate scores -1e8
    attentions = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    assert all((len(n.input) == 3) == unpad for n in attentions)
    # the parity check against torch runs padded batches of several shapes: exact, as the plain export
    results = check_parity(enc, out, src.vocab_size, src.max_seq_length)
    assert max(r.max_abs_diff for r in results) < 1e-5
    ids, mask = random_batch(6, 20, src.vocab_size, np.random.default_rng(3))
    np.testing.assert_allclose(_embed(out, ids, mask), _embed(path, ids, mask), atol=1e-5)


def test_unpadded_rows_do_not_depend_on_batch_mates(src, exported, tmp_path):
    """A sentence's vector is the same alone and beside a longer one: its padding costs no work and
    changes nothing (the padded rows the attention sees are masked)."""
    _, path = exported
    out = tmp_path / "r.onnx"
    out.write_bytes(path.read_bytes())
    rewrite(out, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    ids, mask = random_batch(2, 24, src.vocab_size, np.random.default_rng(5))
    mask[0, :] = 1
    mask[1, 9:] = 0
    both = _embed(out, ids, mask)
    alone = _embed(out, ids[1:, :9], mask[1:, :9])
    np.testing.assert_allclose(both[1], alone[0], atol=1e-5)


def test_smoothed_and_quantized_rewrite_runs(src, tmp_path):
    """The compressed recipe's order: smoothing Muls in the token stream, rewrite, then int8."""
    import copy

    from common.onnx_encoder import pad_ids

    bert = copy.deepcopy(src.bert)
    rng = np.random.default_rng(0)
    smooth_encoder(bert, [list(rng.integers(5, src.vocab_size, 12)) for _ in range(8)], 0.9, share_qkv=True)
    enc = SentenceEncoder(bert)
    fp32, plain, served = tmp_path / "fp32.onnx", tmp_path / "plain.onnx", tmp_path / "served.onnx"
    export_onnx(enc, fp32, src.vocab_size)
    q = QuantizeConfig(encoder_int8=True, smooth_alpha=0.9, smooth_shared_qkv=True, reduce_range=True)
    apply(q, fp32, plain)
    rewrite(fp32, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    check_parity(enc, fp32, src.vocab_size, src.max_seq_length)
    apply(q, fp32, served)
    assert _ops(onnx.load(str(served)))["MatMulInteger"] == _ops(onnx.load(str(plain)))["MatMulInteger"] > 0
    ids, mask = (a for a in pad_ids([list(rng.integers(5, src.vocab_size, 11))]))
    # one sentence has no padding: the two int8 graphs quantize the same activations
    a, b = _embed(served, ids, mask), _embed(plain, ids, mask)
    assert float((a * b).sum()) > 0.9999


def test_plain_config_leaves_the_file(src, exported, tmp_path):
    _, path = exported
    out = tmp_path / "r.onnx"
    out.write_bytes(path.read_bytes())
    assert rewrite(out, GraphConfig(), 2).fused_attention == 0
    assert out.read_bytes() == path.read_bytes()


def test_unrecognised_attention_is_reported_and_file_kept(exported, tmp_path):
    """A graph whose mask does not come from attention_mask alone (here: from input_ids) is not fused."""
    _, path = exported
    model = onnx.load(str(path))
    add = next(n for n in model.graph.node if n.op_type == "Softmax")
    add = next(n for n in model.graph.node if n.output[0] == add.input[0])
    cast = helper.make_node("Cast", [contract.INPUT_IDS], ["ids_f"], to=onnx.TensorProto.FLOAT)
    model.graph.node.insert(0, cast)
    add.input[1] = "ids_f"
    out = tmp_path / "odd.onnx"
    onnx.save(model, str(out))
    before = out.read_bytes()
    report = rewrite(out, GraphConfig(fuse_attention=True), 2)
    assert report.fused_attention == 0 and "attention_mask" in report.skipped
    assert out.read_bytes() == before


def test_remove_padding_refuses_a_token_mixing_operator(exported):
    """An operator between the embeddings and the last LayerNorm that is not per token stops the rewrite."""
    _, path = exported
    model = onnx.load(str(path))
    fuse_attention(model, 2)
    ffn = next(n for n in model.graph.node if n.op_type == "Erf")
    reduce = helper.make_node("ReduceMean", [ffn.input[0]], ["mixed"], keepdims=1, axes=[1])
    ffn.input[0] = "mixed"
    model.graph.node.insert(list(model.graph.node).index(ffn), reduce)
    with pytest.raises(UnsupportedGraph, match="ReduceMean"):
        remove_padding(model)


def test_graph_config_checks():
    with pytest.raises(ConfigError, match="needs fuse_attention"):
        GraphConfig(remove_padding=True)
    assert GraphConfig(fuse_attention=True, remove_padding=True).remove_padding


def test_left_padding_is_exact_too(src, exported, tmp_path):
    """The packing follows the mask wherever its zeros are, not only at the end of each row."""
    _, path = exported
    out = tmp_path / "r.onnx"
    out.write_bytes(path.read_bytes())
    rewrite(out, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    ids, mask = random_batch(4, 18, src.vocab_size, np.random.default_rng(7))
    ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    np.testing.assert_allclose(_embed(out, ids, mask), _embed(path, ids, mask), atol=1e-5)


def test_a_distinct_id_table_decodes_the_packed_ids(src, tmp_path):
    """A factorized table exports as Unique → decode of the distinct ids → Gather back in place; with
    padding removed it decodes the batch's real token ids directly (no Unique), exact on padded batches."""
    from compression.model import with_factorized_embedding, word_embedding_matrix
    from compression.table.factorize import FactorizeConfig, factorize

    E = word_embedding_matrix(src.bert)
    f = factorize(
        E,
        FactorizeConfig(method="pq", rank=src.hidden_size, subspaces=16, codebook_size=32),
        np.arange(E.shape[0])[::-1].copy(),
    )
    enc = SentenceEncoder(with_factorized_embedding(src.bert, f))
    path = tmp_path / "pq.onnx"
    export_onnx(enc, path, src.vocab_size)
    assert "Unique" in _ops(onnx.load(str(path)))
    rewrite(path, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    model = onnx.load(str(path))
    assert "Unique" not in _ops(model)
    packed_ids = next(n for n in model.graph.node if n.op_type == "GatherND" and n.input[0] == contract.INPUT_IDS)
    codes = next(n for n in model.graph.node if n.op_type == "Gather" and "codes" in n.input[0])
    assert codes.input[1] == packed_ids.output[0]
    assert [n.op_type for n in model.graph.node if contract.INPUT_IDS in n.input] == ["GatherND"]
    results = check_parity(enc, path, src.vocab_size, src.max_seq_length)
    assert max(r.max_abs_diff for r in results) < 1e-5


def test_an_unusual_embedding_block_packs_the_embeddings_instead(src, exported, tmp_path):
    """Ids are packed only where the rows summed are the same: a position index that is not arange(L)
    (here reversed) leaves the packing after the embedding LayerNorm, still exact."""
    _, path = exported
    model = onnx.load(str(path))
    pos = next(n for n in model.graph.node if n.op_type == "Gather" and "position" in n.input[0])
    flip = helper.make_node("Neg", [pos.input[1]], ["neg_pos"])
    add = helper.make_node("Add", ["neg_pos", "last_pos"], ["rev_pos"])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(src.max_seq_length - 1, np.int64), "last_pos"))
    pos.input[1] = "rev_pos"
    model.graph.node.insert(list(model.graph.node).index(pos), flip)
    model.graph.node.insert(list(model.graph.node).index(pos), add)
    odd = tmp_path / "odd.onnx"
    onnx.save(model, str(odd))
    out = tmp_path / "r.onnx"
    out.write_bytes(odd.read_bytes())
    rewrite(out, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    packs = {n.input[0] for n in onnx.load(str(out)).graph.node if n.op_type == "GatherND"}
    assert contract.INPUT_IDS not in packs
    ids, mask = random_batch(4, 18, src.vocab_size, np.random.default_rng(2))
    np.testing.assert_allclose(_embed(out, ids, mask), _embed(odd, ids, mask), atol=1e-5)
