"""Compress your own model: every kind of source through the one command to a served variant; the
sources the pipeline cannot reproduce refused up front, in one line, with nothing written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from common.manifest import Manifest
from common.onnx_encoder import OnnxEncoder
from compression.cli import main
from compression.export.onnx_export import export_onnx
from compression.model import SentenceEncoder
from compression.sources.load import load_source, source_name
from tests.compressing import TEXTS, assert_served_pair, compress_cli, cosine
from tests.conftest import REPO
from tests.tiny import export_hf_onnx, make_st_folder


@pytest.mark.parametrize(
    "pooling,normalize,lower",
    [("mean", True, False), ("cls", True, True), ("max", False, False), ("mean_sqrt_len", False, True)],
)
def test_sentence_transformers_folder_exports_what_it_encodes(tmp_path, pooling, normalize, lower):
    from sentence_transformers import SentenceTransformer

    folder = make_st_folder(tmp_path / "st", pooling, normalize, lower, hidden=32, heads=4)
    src = load_source(folder, scratch=tmp_path / "scratch")
    assert (src.pooling.mode, src.pooling.normalize, src.max_seq_length) == (pooling, normalize, 40)
    out = tmp_path / "exported"
    out.mkdir()
    export_onnx(SentenceEncoder(src.bert, src.pooling), out / "model.onnx", src.vocab_size)
    shutil.copy(src.tokenizer_file, out / "tokenizer.json")
    ours = OnnxEncoder(out, max_length=src.max_seq_length).encode(TEXTS)
    ref = SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    assert cosine(ours, ref).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)


def test_do_lower_case_is_kept_in_the_served_tokenizer(tmp_path):
    """The folder's tokenizer is cased; sentence-transformers lowercases first, so the export must too."""
    from tokenizers import Tokenizer

    src = load_source(make_st_folder(tmp_path / "st", lower_case=True), scratch=tmp_path / "scratch")
    tok = Tokenizer.from_file(str(src.tokenizer_file))
    assert tok.encode("GREAT Movie").tokens == tok.encode("great movie").tokens


def test_one_command_on_a_sentence_transformers_folder(tmp_path, corpus, no_data):
    folder = make_st_folder(tmp_path / "My_Encoder", pooling="cls", hidden=48, heads=4, layers=3, vocab_size=400)
    out = tmp_path / "out"
    assert compress_cli(folder, out, corpus, no_data) == 0
    base, fact = assert_served_pair(out, "my-encoder")
    assert fact.pooling == "cls" and fact.source["kind"] == "sentence-transformers"
    assert base.bytes.embedding / fact.bytes.embedding >= 3
    # The quality bound is relative to the baseline: a recovery that wrecked the model fails here.
    assert fact.quality.fidelity_mean >= 0.95 and fact.quality.fidelity_p1 >= 0.85
    assert fact.quality.stsb_spearman is None  # no STS-B data: not run, and the manifest says so
    assert set(fact.evaluations) == {"fidelity", "heldout_fidelity"}
    assert 0 < fact.evaluations["fidelity"]["texts"] <= 15  # 5% of the 300-line corpus, held out
    recovered = fact.recipe["recover"]
    assert recovered["steps"] == 4 and recovered["num_sentences"] == 64


def test_one_command_on_a_plain_hf_folder_with_heads(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "compress",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--data-dir",
            str(tiny_data_dir),
            "--target-ratio",
            "3",
            "--set",
            "recover.steps=3",
            "--set",
            "recover.batch_size=8",
            "--set",
            "recover.num_sentences=64",
            "--no-progress",
        ]
    )
    assert rc == 0
    base, fact = assert_served_pair(out, "tiny-bert")
    assert fact.source["kind"] == "huggingface" and fact.pooling == "mean" and fact.normalized
    assert set(fact.heads) == {"sentiment", "question-type"} and set(base.heads) == set(fact.heads)
    assert {"stsb", "fidelity", "heldout_fidelity"} <= set(fact.evaluations)
    # Compressing again reuses the baseline, rebuilding only the variant.
    sha = base.sha256
    assert (
        main(
            [
                "compress",
                "--model",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--data-dir",
                str(tiny_data_dir),
                "--target-ratio",
                "3",
                "--set",
                "recover.steps=0",
                "--no-progress",
                "--no-heads",
            ]
        )
        == 0
    )
    assert Manifest.read(out / "tiny-bert").sha256 == sha


@pytest.mark.parametrize("token_types,pooler", [(True, True), (False, False)])
def test_one_command_on_a_token_state_onnx_export(tmp_path, corpus, no_data, token_types, pooler):
    folder = make_st_folder(tmp_path / "st", hidden=32, heads=4)
    src = load_source(folder, scratch=tmp_path / "scratch")
    repo = tmp_path / "bge-like"
    export_hf_onnx(src.bert, repo / "onnx" / "model.onnx", token_type_ids=token_types, pooler_output=pooler)
    shutil.copy(folder / "tokenizer.json", repo / "tokenizer.json")
    out = tmp_path / "out"
    assert compress_cli(repo, out, corpus, no_data) == 0
    base, fact = assert_served_pair(out, "bge-like")
    assert base.source["kind"] == "onnx" and base.source["heads"] == 4
    ours = OnnxEncoder(out / "bge-like", max_length=base.max_seq_length).encode(TEXTS)
    ref = OnnxEncoder(make_exported(tmp_path / "ref", src), max_length=base.max_seq_length).encode(TEXTS)
    assert cosine(ours, ref).min() >= 0.9999  # mean pooling over the graph's token states


def make_exported(out, src):
    out.mkdir()
    export_onnx(SentenceEncoder(src.bert, src.pooling), out / "model.onnx", src.vocab_size)
    shutil.copy(src.tokenizer_file, out / "tokenizer.json")
    return out


def test_onnx_round_trip_gives_identical_weights_and_outputs(tmp_path, tiny_model_dir):
    """Export the tiny baseline as the service's pooled graph, import it: the same BertModel."""
    import torch

    src = load_source(tiny_model_dir, scratch=tmp_path / "scratch")
    exported = make_exported(tmp_path / "exp", src)
    back = load_source(exported / "model.onnx", scratch=tmp_path / "scratch")
    assert back.kind == "onnx" and back.pooling == src.pooling and back.name == "exp"
    want, got = src.bert.state_dict(), back.bert.state_dict()
    assert {k for k in want if not k.startswith("pooler.")} <= set(got)
    for key, value in got.items():
        assert torch.equal(value, want[key]), key
    again = make_exported(tmp_path / "again", back)
    a = OnnxEncoder(exported, max_length=src.max_seq_length).encode(TEXTS)
    b = OnnxEncoder(again, max_length=src.max_seq_length).encode(TEXTS)
    np.testing.assert_array_equal(a, b)


def test_one_command_on_a_pooled_onnx_export_finds_its_pooling(tmp_path, corpus, no_data):
    folder = make_st_folder(tmp_path / "st", pooling="max", normalize=False, hidden=32, heads=4, vocab_size=240)
    src = load_source(folder, scratch=tmp_path / "scratch")
    graph = tmp_path / "pooled.onnx"
    export_onnx(SentenceEncoder(src.bert, src.pooling), graph, src.vocab_size)
    back = load_source(graph, tokenizer=folder / "tokenizer.json", scratch=tmp_path / "scratch")
    assert (back.pooling.mode, back.pooling.normalize, back.bert.config.num_attention_heads) == ("max", False, 4)
    out = tmp_path / "out"
    assert compress_cli(graph, out, corpus, no_data, "--tokenizer", str(folder / "tokenizer.json")) == 0
    base, fact = assert_served_pair(out, "pooled")
    assert (fact.pooling, fact.normalized) == ("max", False) and fact.quality.fidelity_mean >= 0.95


def test_the_cli_forwards_every_flag_to_compress(tmp_path, monkeypatch, capsys):
    """compress's flags reach compression.compress() unchanged (the build stubbed: what the API then does
    is tested on its own)."""
    from types import SimpleNamespace

    from compression import api

    seen = {}

    def compress(source, out_dir, **kw):
        seen.update(kw, source=source, out_dir=out_dir)
        return SimpleNamespace(model_dump_json=lambda indent: '{"name": "x-fact"}')

    monkeypatch.setattr(api, "compress", compress)
    argv = ["compress", "--model", "m", "--out", str(tmp_path), "--corpus", "c1", "c2", "--data-dir", "d"]
    argv += ["--name", "x", "--max-table-mb", "2", "--seed", "3", "--pooling", "cls", "--tokenizer", "t.json"]
    argv += ["--set", "recover.steps=7", "--no-heads", "--no-progress", "--threads", "2", "--diagnose"]
    argv += ["--prompt", "query", "--eval", "e1", "--trim-vocab", "--device", "cpu"]
    assert main(argv) == 0
    assert (str(seen["source"]), str(seen["out_dir"]), seen["name"]) == ("m", str(tmp_path), "x")
    assert [str(c) for c in seen["corpus"]] == ["c1", "c2"] and str(seen["data_dir"]) == "d"
    assert (seen["max_table_mb"], seen["target_ratio"], seen["min_fidelity"]) == (2.0, None, None)
    assert (seen["seed"], seen["pooling"], str(seen["tokenizer"]), seen["threads"]) == (3, "cls", "t.json", 2)
    assert seen["overrides"] == {"recover": {"steps": 7}}
    assert not seen["heads"] and not seen["progress"] and seen["diagnose"] and seen["trim_vocab"]
    assert seen["prompt"] == "query" and [str(e) for e in seen["evaluate"]] == ["e1"] and seen["device"] == "cpu"
    assert '"name": "x-fact"' in capsys.readouterr().out  # the manifest is printed


def _refused(capsys, argv, out) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not out.exists() or not [p for p in out.iterdir() if p.name != ".cache"]
    return err


def _folder_with(tmp_path, tiny_model_dir, **config) -> str:
    folder = tmp_path / "other"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text()) | config
    (folder / "config.json").write_text(json.dumps(cfg))
    return str(folder)


@pytest.mark.parametrize("model_type", ["mpnet", "distilbert", "t5"])
def test_other_architectures_are_refused_up_front(tmp_path, capsys, corpus, tiny_model_dir, model_type):
    folder = _folder_with(tmp_path, tiny_model_dir, model_type=model_type)
    err = _refused(
        capsys,
        ["compress", "--model", folder, "--out", str(tmp_path / "out"), "--corpus", str(corpus)],
        tmp_path / "out",
    )
    assert model_type in err and "supported: bert" in err and "xlm-roberta" in err


def test_unsupported_pooling_and_modules_are_refused(tmp_path, capsys, corpus):
    folder = make_st_folder(tmp_path / "st")
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    err = _refused(
        capsys,
        ["compress", "--model", str(folder), "--out", str(tmp_path / "o1"), "--corpus", str(corpus)],
        tmp_path / "o1",
    )
    assert "weightedmean" in err
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 9, "name": "9", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    err = _refused(
        capsys,
        ["compress", "--model", str(folder), "--out", str(tmp_path / "o2"), "--corpus", str(corpus)],
        tmp_path / "o2",
    )
    assert "Dense" in err


def test_broken_onnx_sources_are_refused(tmp_path, capsys, corpus, tiny_model_dir):
    out = tmp_path / "out"
    garbage = tmp_path / "garbage" / "model.onnx"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x08\x07not a graph" * 50)
    (garbage.parent / "tokenizer.json").write_bytes((tiny_model_dir / "tokenizer.json").read_bytes())
    assert "not a readable ONNX graph" in _refused(
        capsys, ["compress", "--model", str(garbage), "--out", str(out), "--corpus", str(corpus)], out
    )

    src = load_source(tiny_model_dir, scratch=tmp_path / "scratch")
    lonely = tmp_path / "lonely" / "m.onnx"
    lonely.parent.mkdir()
    export_onnx(SentenceEncoder(src.bert), lonely, src.vocab_size)
    assert "--tokenizer" in _refused(
        capsys, ["compress", "--model", str(lonely), "--out", str(out), "--corpus", str(corpus)], out
    )

    fused = tmp_path / "fused.onnx"
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="Attention_0", domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8])],
    )
    onnx.save(helper.make_model(graph), fused)
    err = _refused(
        capsys,
        [
            "compress",
            "--model",
            str(fused),
            "--tokenizer",
            str(tiny_model_dir / "tokenizer.json"),
            "--out",
            str(out),
            "--corpus",
            str(corpus),
        ],
        out,
    )
    assert "Attention_0" in err


def test_an_export_whose_weights_cannot_be_placed_names_the_node(tmp_path, capsys, corpus, tiny_model_dir):
    """A bias that lost its name: the MatMul before it cannot be placed, and the error says which."""
    from onnx import numpy_helper

    src = load_source(tiny_model_dir, scratch=tmp_path / "scratch")
    graph_file = tmp_path / "renamed.onnx"
    export_hf_onnx(src.bert, graph_file)
    model = onnx.load(str(graph_file))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul" and "layer.1/output/dense" in n.name)
    add = next(n for n in model.graph.node if n.op_type == "Add" and matmul.output[0] in n.input)
    bias = next(x for x in add.input if x != matmul.output[0])
    value = src.bert.state_dict()["encoder.layer.1.output.dense.bias"].numpy()
    model.graph.initializer.append(numpy_helper.from_array(value, "anonymous_0"))
    add.input[:] = ["anonymous_0" if x == bias else x for x in add.input]
    onnx.save(model, graph_file)
    out = tmp_path / "out"
    err = _refused(
        capsys,
        [
            "compress",
            "--model",
            str(graph_file),
            "--tokenizer",
            str(tiny_model_dir / "tokenizer.json"),
            "--out",
            str(out),
            "--corpus",
            str(corpus),
        ],
        out,
    )
    assert "layer.1/output/dense/MatMul" in err


def test_no_corpus_and_no_data_is_a_one_line_error(tmp_path, capsys, no_data, tiny_model_dir):
    out = tmp_path / "out"
    err = _refused(
        capsys, ["compress", "--model", str(tiny_model_dir), "--out", str(out), "--data-dir", str(no_data)], out
    )
    assert "--corpus" in err


def test_corpus_formats(tmp_path):
    from compression.corpus import CorpusError, read_corpus

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("one text\n\nanother text\n")
    (tmp_path / "c" / "b.jsonl").write_text('{"text": "a record"}\n{"text": "one text"}\n')
    assert read_corpus(tmp_path / "c") == ["one text", "another text", "a record"]
    (tmp_path / "bad.jsonl").write_text('{"body": "no text field"}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:1"):
        read_corpus(tmp_path / "bad.jsonl")


def test_names_come_from_the_source(tmp_path):
    assert source_name(tmp_path / "BAAI_bge-small-en-v1.5") == "baai-bge-small-en-v1.5"
    assert source_name(tmp_path / "e5-small" / "onnx" / "model.onnx") == "e5-small"
    assert source_name(tmp_path / "gte.onnx") == "gte"
    assert source_name(tmp_path / "my-encoder" / "model") == "my-encoder"


def test_help_report_and_the_recipe_parsing_do_not_import_torch(tmp_path, tiny_models):
    """--help, `report` and recipe parsing run with torch made unimportable."""
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    code = (
        "import sys; from compression.cli import main; from compression.recipes import load_recipes; "
        f"load_recipes(); assert main(['report', '--out', '{tiny_models}', '--report-dir', '{tmp_path}', "
        "'--no-docs']) == 0; main(['compress', '--help'])"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "--target-ratio" in done.stdout and "| tiny-fact |" in (tmp_path / "report.md").read_text()


def test_min_fidelity_refuses_a_fixed_size(tmp_path, capsys, corpus, no_data, tiny_model_dir):
    for extra in (["--set", "factorize.subspaces=8"], ["--max-table-mb", "1"], ["--min-fidelity", "1.5"]):
        extra = extra if "--min-fidelity" in extra else [*extra, "--min-fidelity", "0.9"]
        argv = [
            "compress",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path),
            "--corpus",
            str(corpus),
            "--data-dir",
            str(no_data),
            "--no-progress",
            *extra,
        ]
        assert "--min-fidelity" in _refused(capsys, argv, tmp_path)
