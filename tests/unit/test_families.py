"""Encoder families beyond BERT with a WordPiece vocabulary: XLM-RoBERTa (positions offset by
padding_idx + 1, one token type, pad id 1) and a BERT with a SentencePiece/Unigram tokenizer, from a
sentence-transformers folder, a Hugging Face folder and ONNX exports (one output, or the four-output
features dict), through the one command to a served pair."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from common.probe_set import ProbeSet
from compression.cli import main
from compression.sources.architectures import XLM_ROBERTA, family_of, special_ids
from compression.sources.load import load_source
from tests.compressing import TEXTS, assert_served_pair, compress_cli, cosine
from tests.tiny import make_tiny_family

PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def xlmr_st(tmp_path_factory):
    return make_tiny_family(tmp_path_factory.mktemp("xlmr") / "tiny-xlmr", "xlm-roberta", prompts=PROMPTS)


def st_encode(folder, texts, **kw) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, **kw)


def ours(src, texts: list[str]) -> np.ndarray:
    import torch

    from common.onnx_encoder import load_tokenizer, pad_ids
    from compression.model import SentenceEncoder

    tok = load_tokenizer(src.tokenizer_file, src.max_seq_length)
    tok.no_padding()
    ids, mask = pad_ids([e.ids for e in tok.encode_batch(texts)])
    with torch.no_grad():
        return SentenceEncoder(src.bert, src.pooling)(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


def test_family_knowledge_is_data():
    assert family_of("xlm-roberta") is XLM_ROBERTA and family_of("roberta") is XLM_ROBERTA
    assert XLM_ROBERTA.position_offset({"pad_token_id": 1}) == 2
    assert family_of("bert").position_offset({"pad_token_id": 1}) == 0


def test_special_ids_come_from_the_tokenizer(xlmr_st, tiny_model_dir):
    assert special_ids(xlmr_st / "tokenizer.json").pad == 1
    assert special_ids(tiny_model_dir / "tokenizer.json").pad == 0


def test_xlmr_folder_is_mapped_onto_an_equal_bert(xlmr_st, tmp_path):
    src = load_source(xlmr_st, scratch=tmp_path)
    assert src.family is XLM_ROBERTA and src.describe()["family"] == "xlm-roberta"
    assert src.bert.config.max_position_embeddings == 64  # 66 rows, the first two never read
    assert PROMPTS.items() <= src.prompts.items() and src.default_prompt_name == "query"
    ref = st_encode(xlmr_st, TEXTS)  # right-padded batches, as served; with its default prompt
    assert cosine(ours(src, ["query: " + t for t in TEXTS]), ref).min() > 0.99999


def test_bert_with_a_unigram_tokenizer_loads_as_is(tmp_path):
    folder = make_tiny_family(tmp_path / "uni-bert", "bert")
    src = load_source(folder, scratch=tmp_path)
    assert src.family.name == "bert" and special_ids(src.tokenizer_file).pad == 1
    assert cosine(ours(src, TEXTS), st_encode(folder, TEXTS)).min() > 0.99999


def test_xlmr_hf_folder_loads(tmp_path):
    import torch
    from transformers import XLMRobertaModel

    folder = make_tiny_family(tmp_path / "hf-xlmr", "xlm-roberta", layout="huggingface")
    src = load_source(folder, scratch=tmp_path)
    ids = torch.tensor([[0, 10, 20, 30, 2], [0, 40, 2, 1, 1]])
    mask = (ids != 1).long()
    ref = XLMRobertaModel.from_pretrained(str(folder)).eval()(input_ids=ids, attention_mask=mask).last_hidden_state
    with torch.no_grad():
        got = src.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(got[real], ref[real].detach(), atol=1e-5)


def export_features_dict(
    folder, path, outputs=("input_ids", "attention_mask", "token_embeddings", "sentence_embedding")
):
    """The whole sentence-transformers model exported with its features dict as outputs (integer echoes
    of the inputs among them), as exports of a sentence-transformers model look."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu").eval()

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask):
            out = self.st({"input_ids": input_ids, "attention_mask": attention_mask})
            return tuple(out[k] for k in outputs)

    ids = torch.tensor([[0, 10, 20, 30, 2], [0, 40, 50, 60, 2]])
    axes = {n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_embeddings")}
    axes["sentence_embedding"] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Whole().eval(),
            (ids, torch.ones_like(ids)),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=list(outputs),
            dynamic_axes={k: v for k, v in axes.items() if k in outputs or k in ("input_ids", "attention_mask")},
        )
    _inputs_by_their_names(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path.parent / name).write_bytes((folder / name).read_bytes())
    return path


def _inputs_by_their_names(path) -> None:
    """torch renames an input that is also an output ('input_ids.1'); put it back, the echo outputs then
    read the graph inputs directly, as in a features-dict export."""
    import onnx

    model = onnx.load(str(path))
    renames = {i.name: i.name.split(".")[0] for i in model.graph.input if "." in i.name}
    keep = [
        n
        for n in model.graph.node
        if not (n.op_type == "Identity" and n.input[0] in renames and n.output[0] in renames.values())
    ]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    for node in model.graph.node:
        node.input[:] = [renames.get(x, x) for x in node.input]
    for inp in model.graph.input:
        inp.name = renames.get(inp.name, inp.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    "outputs",
    [("input_ids", "attention_mask", "token_embeddings", "sentence_embedding"), ("token_embeddings",)],
    ids=["features-dict", "token-states"],
)
def test_xlmr_onnx_exports_are_imported(xlmr_st, tmp_path, outputs):
    graph = export_features_dict(xlmr_st, tmp_path / "onnx" / "model.onnx", outputs)
    src = load_source(graph, scratch=tmp_path)
    assert src.family is XLM_ROBERTA and src.bert.config.max_position_embeddings == 64
    assert src.pooling.mode == "mean"
    assert cosine(ours(src, TEXTS), st_encode(xlmr_st, TEXTS, prompt_name="document")).min() > 0.9999


def test_a_graph_without_a_usable_output_names_its_outputs(xlmr_st, tmp_path, capsys):
    import onnx

    graph = export_features_dict(xlmr_st, tmp_path / "onnx" / "model.onnx")
    model = onnx.load(str(graph))
    keep = [o for o in model.graph.output if o.name in ("input_ids", "attention_mask")]
    del model.graph.output[:]
    model.graph.output.extend(keep)  # the encoder's nodes stay; only integer echoes are outputs
    onnx.save(model, str(graph))
    rc = main(
        [
            "compress",
            "--model",
            str(graph),
            "--out",
            str(tmp_path / "out"),
            "--corpus",
            str(graph.parent / "tokenizer.json"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "input_ids (int64 [batch, seq])" in err[0], err
    assert not (tmp_path / "out").exists()


def test_one_command_on_an_xlmr_folder_with_prompts(xlmr_st, tmp_path, corpus, no_data):
    out = tmp_path / "out"
    assert compress_cli(xlmr_st, out, corpus, no_data) == 0
    base, fact = assert_served_pair(out, "tiny-xlmr")
    for m in (base, fact):
        assert m.source["family"] == "xlm-roberta"
        assert PROMPTS.items() <= m.prompts.items() and m.default_prompt_name == "query"
    # The probe set is embedded with the prompt the model expects, so a host check measures what is served.
    probe = ProbeSet.read(out / "tiny-xlmr-fact")
    assert probe.texts and all(t.startswith("query: ") for t in probe.texts)


def test_an_unknown_prompt_is_refused_before_anything_is_built(xlmr_st, tmp_path, corpus, capsys):
    rc = main(
        [
            "compress",
            "--model",
            str(xlmr_st),
            "--out",
            str(tmp_path / "out"),
            "--corpus",
            str(corpus),
            "--prompt",
            "search",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'passage'" in err[0] and "'query'" in err[0], err
    assert not (tmp_path / "out").exists()


def test_trimming_keeps_the_corpus_pieces_and_its_scripts_characters(xlmr_st, tmp_path):
    from tokenizers import Tokenizer

    from compression.table.trim import trim_tokenizer

    texts = ["the dog plays music", "a good movie"]
    full = Tokenizer.from_file(str(xlmr_st / "tokenizer.json"))
    trimmed = trim_tokenizer(xlmr_st / "tokenizer.json", texts, tmp_path / "t.json", full.get_vocab_size())
    tok = Tokenizer.from_file(str(tmp_path / "t.json"))
    assert tok.get_vocab_size() == len(trimmed.kept) < full.get_vocab_size()
    for text in texts:  # the corpus tokenizes to the same pieces, renumbered
        assert tok.encode(text).tokens == full.encode(text).tokens
        assert [int(trimmed.kept[i]) for i in tok.encode(text).ids] == full.encode(text).ids
    unk = tok.token_to_id("<unk>")
    other = "zebra quiz jumps"  # Latin script, words the corpus lacks: re-segmented, never <unk>
    assert unk not in tok.encode(other).ids
    assert tok.token_to_id("<pad>") == 1 and trimmed.scripts == ["LATIN"]


def test_one_command_with_a_trimmed_vocabulary(xlmr_st, tmp_path, corpus, no_data):
    from tokenizers import Tokenizer

    out = tmp_path / "out"
    assert compress_cli(xlmr_st, out, corpus, no_data, "--trim-vocab") == 0
    base, fact = assert_served_pair(out, "tiny-xlmr")
    vocab = fact.vocabulary
    assert vocab["trimmed"] and vocab["kept"] < vocab["of"] == base.source["vocab_size"] and not base.vocabulary
    assert Tokenizer.from_file(str(out / "tiny-xlmr-fact" / "tokenizer.json")).get_vocab_size() == vocab["kept"]
    assert fact.quality.heldout_fidelity_mean > 0.5  # measured against the full-vocabulary baseline, by text


@pytest.mark.parametrize(
    "family,layout",
    [
        ("xlm-roberta", "huggingface"),
        ("xlm-roberta", "onnx-features-dict"),
        ("bert", "sentence-transformers"),
        ("bert", "onnx-features-dict"),
    ],
)
def test_one_command_on_other_families_and_layouts(xlmr_st, tmp_path, corpus, no_data, family, layout):
    """XLM-R from a Hugging Face folder and a features-dict export; a BERT with a Unigram tokenizer (pad 1)."""
    if layout == "onnx-features-dict":
        folder = xlmr_st if family == "xlm-roberta" else make_tiny_family(tmp_path / "st", family)
        source = export_features_dict(folder, tmp_path / "tiny-xlmr" / "model.onnx")
    else:
        source = make_tiny_family(tmp_path / "tiny-xlmr", family, layout=layout)
    out = tmp_path / "out"
    assert compress_cli(source, out, corpus, no_data) == 0
    base, fact = assert_served_pair(out, "tiny-xlmr")
    assert fact.source["family"] == family and fact.quality.heldout_fidelity_mean > 0.5
