"""The dense route (compression/export/dense_route.py) on a tiny random BERT: batches without padding run a
copy of the int8 graph with the packing taken out, exact against the unpadded graph on any batch."""

import collections

import numpy as np
import onnx
import pytest

from common import contract
from common.onnx_encoder import make_session
from compression.config import GraphConfig, QuantizeConfig
from compression.export import dense_route
from compression.export.measure import embedding_bytes
from compression.export.onnx_export import export_onnx, random_batch
from compression.export.quantize import apply
from compression.export.serving_graph import UnsupportedGraph, rewrite
from compression.model import SentenceEncoder
from compression.sources.load import load_source

PACKING = {"NonZero", "GatherND"}  # (its CumSum of the mask stays: the position column)


@pytest.fixture(scope="module")
def src(tiny_model_dir):
    return load_source(tiny_model_dir)


def _served(src, work, remove_padding=True):
    """The tiny model exported, rewritten for serving and quantized to int8, as the build does."""
    fp32, out = work / "fp32.onnx", work / "model.onnx"
    export_onnx(SentenceEncoder(src.bert), fp32, src.vocab_size)
    rewrite(fp32, GraphConfig(fuse_attention=True, remove_padding=remove_padding), src.bert.config.num_attention_heads)
    apply(QuantizeConfig(encoder_int8=True), fp32, out)
    return out


@pytest.fixture(scope="module")
def served(src, tmp_path_factory):
    return _served(src, tmp_path_factory.mktemp("route"))


def _embed(path, ids, mask):
    return make_session(path).run(
        [contract.OUTPUT_EMBEDDING], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}
    )[0]


def _batches(vocab):
    rng = np.random.default_rng(7)
    one = random_batch(1, 14, vocab, rng)
    same = (rng.integers(1, vocab, (3, 10)), np.ones((3, 10), np.int64))
    mixed = random_batch(4, 16, vocab, rng)
    left = (mixed[0][:, ::-1].copy(), mixed[1][:, ::-1].copy())
    return [one, same, mixed, left]


def test_routed_graph_is_exact_on_dense_and_padded_batches(src, served, tmp_path):
    routed = tmp_path / "model.onnx"
    routed.write_bytes(served.read_bytes())
    assert dense_route.route(routed, src.vocab_size)
    model = onnx.load(str(routed))
    assert [n.op_type for n in model.graph.node] == ["ReduceMin", "Cast", "If"]
    batches = _batches(src.vocab_size)
    assert [int(mask.min()) for _, mask in batches] == [1, 1, 0, 0]  # two run the dense body, two the packed
    for ids, mask in batches:
        np.testing.assert_array_equal(_embed(routed, ids, mask), _embed(served, ids, mask))


def test_dense_body_has_no_packing_and_shares_the_weights(src, served):
    model = onnx.load(str(served))
    dense = dense_route.dense_body(model)
    ops = collections.Counter(n.op_type for n in dense.graph.node)
    assert not PACKING & set(ops)
    assert not [n.name for n in dense.graph.node if n.name.endswith(("/padded", "/packed"))]
    # the same int8 products: only the packing went
    assert ops["MatMulInteger"] == collections.Counter(n.op_type for n in model.graph.node)["MatMulInteger"] > 0
    routed = dense_route.routed(model)
    names = [i.name for i in routed.graph.initializer]
    assert len(names) == len(set(names))  # each weight once, in the outer scope
    (branch_if,) = [n for n in routed.graph.node if n.op_type == "If"]
    for branch in branch_if.attribute:
        assert not branch.g.initializer


def test_dense_body_of_packed_embeddings(src, tmp_path):
    """Where the embeddings are packed after their LayerNorm (not the ids), the dense body reads them whole."""
    from onnx import helper

    fp32 = tmp_path / "fp32.onnx"
    export_onnx(SentenceEncoder(src.bert), fp32, src.vocab_size)
    model = onnx.load(str(fp32))
    pos = next(n for n in model.graph.node if n.op_type == "Gather" and "position" in n.input[0])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(src.max_seq_length - 1, np.int64), "last"))
    for node in (
        helper.make_node("Neg", [pos.input[1]], ["neg_pos"]),
        helper.make_node("Add", ["neg_pos", "last"], ["rev"]),
    ):
        model.graph.node.insert(list(model.graph.node).index(pos), node)
    pos.input[1] = "rev"
    onnx.save(model, str(fp32))
    rewrite(fp32, GraphConfig(fuse_attention=True, remove_padding=True), src.bert.config.num_attention_heads)
    assert contract.INPUT_IDS not in {n.input[0] for n in onnx.load(str(fp32)).graph.node if n.op_type == "GatherND"}
    routed = tmp_path / "routed.onnx"
    routed.write_bytes(fp32.read_bytes())
    assert dense_route.route(routed, src.vocab_size)
    for ids, mask in _batches(src.vocab_size):
        np.testing.assert_array_equal(_embed(routed, ids, mask), _embed(fp32, ids, mask))


def test_a_graph_with_padding_kept_is_left_alone(src, tmp_path):
    plain = _served(src, tmp_path, remove_padding=False)
    before = plain.read_bytes()
    assert not dense_route.route(plain, src.vocab_size)
    assert plain.read_bytes() == before


def test_a_dense_body_that_differs_is_refused_and_the_file_kept(src, served, tmp_path, monkeypatch):
    real = dense_route.dense_body

    def off_scale(model):  # a dense body whose attention scores are scaled wrongly
        dense = real(model)
        for n in dense.graph.node:
            if n.op_type == "MultiHeadAttention":
                kept = [a for a in n.attribute if a.name != "scale"]
                del n.attribute[:]
                n.attribute.extend(kept + [onnx.helper.make_attribute("scale", 0.5)])
        return dense

    monkeypatch.setattr(dense_route, "dense_body", off_scale)
    target = tmp_path / "model.onnx"
    target.write_bytes(served.read_bytes())
    with pytest.raises(UnsupportedGraph, match="differ"):
        dense_route.route(target, src.vocab_size)
    assert target.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_embedding_bytes_are_read_inside_the_route(src, served, tmp_path):
    routed = tmp_path / "model.onnx"
    routed.write_bytes(served.read_bytes())
    dense_route.route(routed, src.vocab_size)
    assert embedding_bytes(routed) == embedding_bytes(served) > 0
