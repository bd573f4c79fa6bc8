"""The peer benchmark's --quick mode on the tiny models, so the harness cannot rot: it builds the
peers' own environments (sentence-transformers' ONNX backend, fastembed), runs every contender in its
own process through the same runner, and reports throughput, STS-B and fidelity for each."""

from __future__ import annotations

import json

import pytest

from bench.cpuid import unavailable_reason
from bench.peers import Peer
from bench.peers.__main__ import main
from bench.peers.workers import measure
from common.machine import HIDDEN_BY_SHIM

pytestmark = pytest.mark.slow


def test_quick_mode_measures_ours_and_the_peers(tiny_models, tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "peers"
    rc = main(
        [
            "--quick",
            "--models-dir",
            str(tiny_models),
            "--compressed",
            "tiny-fact",
            "--int8",
            "tiny-int8",
            "--baseline",
            "tiny",
            "--source",
            str(tiny_model_dir),
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads((out / "results.json").read_text())
    assert set(r["results"]) == {"tiny-fact", "tiny-int8", "tiny", "st-onnx-fp32", "st-onnx-int8", "fastembed"}
    for name, res in r["results"].items():
        assert res["b1"]["texts_per_s"] > 0 and res["b32"]["texts_per_s"] > 0, name
        assert len(res["b1"]["rounds"]) == len(res["b32"]["rounds"]) == r["rounds"] == 2, name
        assert res["rss_after_use"] > res["rss_start"] > 0, name
        assert res["configured"], name
    assert r["results"]["tiny"]["fidelity_mean"] == pytest.approx(1.0, abs=1e-6)
    # the peers run the same fp32 weights (sentence-transformers' and fastembed's own export): they
    # agree with our fp32 graph to rounding, and the int8 export only approximately
    for peer in ("st-onnx-fp32", "fastembed"):
        assert r["results"][peer]["fidelity_mean"] > 0.9999, (peer, r["results"][peer])
        assert r["results"][peer]["stsb"] == pytest.approx(r["results"]["tiny"]["stsb"], abs=0.05), peer
    assert 0.5 < r["results"]["st-onnx-int8"]["fidelity_mean"] < 0.99999
    assert "avx" in r["results"]["st-onnx-int8"]["configured"] or "arm" in r["results"]["st-onnx-int8"]["configured"]
    report = (out / "report.md").read_text()
    assert "python -m bench.peers --quick" in report and "export_dynamic_quantized_onnx_model" in report
    assert any("st-onnx-fp32" in line and "over the rounds" in line for line in r["targets"])


def test_a_contender_that_fails_to_load_stops_the_run_with_its_reason(tmp_path):
    """The worker's process dies before `ready`: the run ends with the runner's last line, no hang."""
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(["a sentence"]))
    with pytest.raises(SystemExit, match="peer broken failed: .*no-such-model"):
        measure(
            [(Peer("broken", "ours", None, "broken"), tmp_path / "no-such-model")],
            tmp_path / "work",
            texts,
            tmp_path,
            tmp_path,
            rounds=1,
            seconds=0.1,
        )


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"cpuid shim: {unavailable_reason()}")
def test_avx2_mode_runs_the_peers_on_avx2_kernels(tiny_models, tiny_model_dir, tiny_data_dir, tmp_path):
    """--cpu avx2: every contender's process sees no AVX-512, so sentence-transformers' int8 export is
    made with its avx2 config, and the report says what was hidden."""
    out = tmp_path / "peers"
    rc = main(
        [
            "--quick",
            "--cpu",
            "avx2",
            "--only",
            "st-onnx-int8",
            "--models-dir",
            str(tiny_models),
            "--compressed",
            "tiny-fact",
            "--int8",
            "tiny-int8",
            "--baseline",
            "tiny",
            "--source",
            str(tiny_model_dir),
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    r = json.loads((out / "results.json").read_text())
    assert set(r["results"]) == {"tiny", "st-onnx-int8"}
    assert "avx2" in r["results"]["st-onnx-int8"]["configured"]
    assert not set(r["machine"]["features"]) & set(HIDDEN_BY_SHIM)
    if r["machine"].get("hidden"):
        assert "hidden from cpuid" in (out / "report.md").read_text()
