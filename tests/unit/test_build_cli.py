"""The pipeline end to end on a tiny random BERT: manifests, atomic output, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from common.manifest import Manifest, sha256_file
from compression import build as build_mod
from compression.cli import main

REPO = Path(__file__).resolve().parents[2]


def _args(tiny_model_dir, tiny_data_dir, out):
    return ["--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def built(tiny_models):
    """tiny, tiny-int8 and tiny-fact, built once per session by conftest's recipe file."""
    return tiny_models


def test_every_variant_has_a_complete_directory(built):
    for name in ("tiny", "tiny-int8", "tiny-fact"):
        d = built / name
        files = {p.name for p in d.iterdir()}
        assert (
            {"manifest.json", "model.onnx", "tokenizer.json", "probe.npz"}
            <= files
            <= {"manifest.json", "model.onnx", "tokenizer.json", "probe.npz", "heads"}
        )
        m = Manifest.read(d)
        assert m.sha256 == sha256_file(d / "model.onnx")
        assert m.bytes.file == (d / "model.onnx").stat().st_size
        assert m.dim == 64 and m.max_seq_length == 48
        assert m.params.total == m.params.embedding + m.params.encoder
        assert m.versions["onnxruntime"] and m.recipe["name"] == name and m.machine["features"] is not None
    assert not [p for p in built.iterdir() if ".tmp-" in p.name], "temporary directories left behind"


def test_compressed_variants_stay_close_to_their_baseline(built):
    """Bounds relative to the baseline: a quantization or a distillation that wrecked the model fails here."""
    base = Manifest.read(built / "tiny").quality
    assert base.fidelity_mean == pytest.approx(1.0) and base.heldout_fidelity_mean == pytest.approx(1.0)
    for name, floor in (("tiny-int8", 0.99), ("tiny-fact", 0.95)):
        q = Manifest.read(built / name).quality
        assert q.fidelity_mean >= floor and q.heldout_fidelity_mean >= floor, name
        assert q.fidelity_p1 >= floor - 0.1, name
        assert abs(q.stsb_spearman - base.stsb_spearman) <= 5, name  # the same ranking of STS-B pairs, near enough
        if name == "tiny-fact":  # the fixture trains heads for tiny and tiny-fact
            assert q.heads["sentiment"]["accuracy"] >= base.heads["sentiment"]["accuracy"] - 10


def test_manifest_fields_describe_the_recipe(built):
    base, fact = Manifest.read(built / "tiny"), Manifest.read(built / "tiny-fact")
    assert base.baseline is None and base.method == "none" and base.quantization == "fp32"
    assert base.quality.fidelity_mean == pytest.approx(1.0)
    assert fact.baseline == "tiny" and fact.method == "pq" and fact.rank == 64
    assert fact.quantization == "factors-int8-decode-int8+positions-fp16+encoder-int8-per-channel-smooth0.9-qkv"
    assert fact.params.embedding < base.params.embedding
    assert fact.recipe["prune"]["ffn_keep"] == 0.5 and fact.params.encoder < base.params.encoder  # half the FFN
    assert fact.bytes.embedding < base.bytes.embedding and fact.bytes.file < base.bytes.file
    assert fact.recipe["recover"]["steps"] == 6 and fact.recipe["final_distill_loss"] is not None
    assert fact.graph["tanh_gelu"] == 2 and "tanh_gelu" not in base.graph  # one GELU per layer, swapped


def test_report_lists_every_variant(built, tmp_path):
    assert main(["report", "--out", str(built), "--report-dir", str(tmp_path), "--no-docs"]) == 0
    rows = json.loads((tmp_path / "report.json").read_text())
    assert [r["variant"] for r in rows] == ["tiny", "tiny-fact", "tiny-int8"]
    assert "| tiny-fact |" in (tmp_path / "report.md").read_text()
    graph = {r["variant"]: r["graph"] for r in rows}
    assert graph == {
        "tiny": "plain",
        "tiny-fact": "fused attention, unpadded, dense route, tanh GELU, FFN pruned to 32",
        "tiny-int8": "plain",
    }


def test_failed_build_leaves_nothing(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise build_mod.PipelineError("evaluation failed on purpose")

    monkeypatch.setattr(build_mod, "quality", boom)
    recipes = tmp_path / "r.toml"
    recipes.write_text('[[variant]]\nname = "tiny"\n')
    out = tmp_path / "out"
    assert main(["build", "--recipes", str(recipes), *_args(tiny_model_dir, tiny_data_dir, out)]) == 2
    assert "evaluation failed on purpose" in capsys.readouterr().err
    assert [p.name for p in out.iterdir() if p.name != ".cache"] == []


def _compress(tiny_model_dir, tiny_data_dir, out, *extra):
    return main(
        [
            "compress",
            "--name",
            "x",
            "--target-ratio",
            "3",
            "--no-heads",
            *extra,
            *_args(tiny_model_dir, tiny_data_dir, out),
        ]
    )


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--set", "factorize.method=svd", "--set", "factorize.rank=0"], "rank must satisfy"),
        (["--set", "factorize.method=svd", "--set", "factorize.rank=64"], "rank must satisfy"),
        (["--set", "factorize.method=svd", "--set", "factorize.rank=-2"], "rank must satisfy"),
        (["--set", "factorize.rank=16", "--set", "factorize.subspaces=5"], "multiple of subspaces"),
        (["--set", "quantize.b_fp16=true"], "choose one storage for the factors"),
        (["--set", "prune.ffn_keep=0"], "prune settings out of range"),
    ],
)
def test_bad_settings_are_one_line_errors_before_anything_is_built(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, extra, message
):
    assert _compress(tiny_model_dir, tiny_data_dir, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # not even the baseline, nor the directory it would have made


def test_missing_model_dir(tiny_data_dir, tmp_path, capsys):
    assert _compress(tmp_path / "nope", tiny_data_dir, tmp_path / "out") == 2
    assert "model not found" in capsys.readouterr().err


def test_incomplete_model_dir_names_what_is_missing(tmp_path, tiny_data_dir, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert _compress(tmp_path / "m", tiny_data_dir, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "tokenizer.json" in err and "model.safetensors" in err


def test_empty_corpus(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert _compress(tiny_model_dir, tiny_data_dir, tmp_path / "out", "--corpus", str(empty)) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_refused_compress_leaves_an_existing_output_directory_as_it_was(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "out"
    (out / "other-model").mkdir(parents=True)
    (out / "other-model" / "manifest.json").write_text("{}")
    assert _compress(tiny_model_dir, tiny_data_dir, out, "--set", "prune.ffn_keep=0") == 2
    assert (out / "other-model" / "manifest.json").read_text() == "{}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_unprivileged(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    assert _compress(tiny_model_dir, tiny_data_dir, out) == 2


def test_unwritable_output(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert _compress(tiny_model_dir, tiny_data_dir, blocker / "models") == 2
    assert "not writable" in capsys.readouterr().err


def test_cli_process_exit_code_and_help(tmp_path):
    help_out = subprocess.run([sys.executable, "-m", "compression", "--help"], cwd=REPO, capture_output=True, text=True)
    assert help_out.returncode == 0
    for cmd in ("build", "compress", "report", "sweep"):
        assert cmd in help_out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "compression", "compress", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "model not found" in bad.stderr


def test_dev_check_compares_on_dev_splits(built, tiny_data_dir, capsys):
    rc = main(
        [
            "dev-check",
            str(built / "tiny"),
            str(built / "tiny-fact"),
            "--baseline",
            str(built / "tiny"),
            "--data-dir",
            str(tiny_data_dir),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | stsb_dev_spearman") and len(lines) == 4
    base, fact = (line.strip("| ").split(" | ") for line in lines[2:])
    assert float(base[2]) == pytest.approx(1.0, abs=1e-5)  # the baseline against itself
    assert 0 < float(fact[2]) < 1.0 and float(fact[3]) <= float(fact[2])


def test_dev_check_by_rarity_splits_every_dev_sentence_into_bands(built, tiny_data_dir, capsys):
    from compression.evaluation.devcheck import _dev_texts

    rc = main(
        [
            "dev-check",
            str(built / "tiny-fact"),
            "--baseline",
            str(built / "tiny"),
            "--data-dir",
            str(tiny_data_dir),
            "--by-rarity",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out.strip().split("\n\n")
    assert len(out) == 2
    bands = [line.strip("| ").split(" | ") for line in out[1].splitlines()[2:]]
    assert bands and all(b[0] == "tiny-fact" for b in bands)
    # every dev sentence falls in exactly one band, and the shares of the infidelity add up to 1
    assert sum(int(b[2]) for b in bands) == len(_dev_texts(tiny_data_dir)[0])
    assert sum(float(b[4]) for b in bands) == pytest.approx(1.0, abs=0.02)
    assert all(0 < float(b[3]) <= 1.0 for b in bands)


def test_dev_check_refuses_a_directory_without_a_model(built, tiny_data_dir, tmp_path, capsys):
    rc = main(["dev-check", str(tmp_path), "--baseline", str(built / "tiny"), "--data-dir", str(tiny_data_dir)])
    assert rc == 2 and "is not a built model directory" in capsys.readouterr().err


def test_compress_with_the_rarer_build_paths(tiny_model_dir, tiny_data_dir, tmp_path):
    """One end-to-end compress through the paths the default recipe does not take: rare-token augmentation
    (its teacher embeddings cached), the block int8 encoder without smoothing, a euclidean metric, the
    int8 factors dequantized at load (no integer decode)."""
    rc = _compress(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--set",
        "factorize.subspaces=8",
        "--set",
        "factorize.rank=16",
        "--set",
        "factorize.codebook_size=16",
        "--set",
        "recover.steps=3",
        "--set",
        "recover.batch_size=8",
        "--set",
        "recover.num_sentences=64",
        "--set",
        "factorize.metric=euclidean",
        "--set",
        "recover.augment_share=0.5",
        "--set",
        "recover.augment_tokens=1",
        "--set",
        "quantize.smooth_alpha=none",
        "--set",
        "quantize.encoder_block=16",
        "--set",
        "quantize.decode_int8=false",
    )
    assert rc == 0
    manifest = Manifest.read(tmp_path / "x-fact")
    recover = manifest.recipe["recover"]
    assert (recover["augment_share"], recover["augment_tokens"], recover["steps"]) == (0.5, 1, 3)
    assert manifest.recipe["factorize"]["metric"] == "euclidean"
    assert manifest.quantization == "factors-int8+positions-fp16+encoder-int8-block16"
    int8 = [
        list(i.dims)
        for i in onnx.load(str(tmp_path / "x-fact" / "model.onnx")).graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    ]
    assert [16, 64] in int8 and [8 * 16, 2] in int8  # B and the centroids (groups × centroids, 2 coordinates)
    assert len(list((tmp_path / ".cache").glob("teacher-*.npz"))) == 2  # the corpus sample and its augmented copies
