"""`python -m bench --quick` end to end on tiny models: every section measured, the report's
schema, readable plots. No timing is asserted; targets live in the report, not here."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from bench.__main__ import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_models, tiny_model_dir, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    sweep = out / "sweep.json"
    sweep.write_text(
        json.dumps(
            [
                {
                    "source": "sweep",
                    "method": "svd",
                    "rank": 8,
                    "embedding_bytes": 5000,
                    "stsb_spearman": 10.0,
                    "fidelity_mean": 0.5,
                }
            ]
        )
    )
    rc = main(
        [
            "--quick",
            "--models-dir",
            str(tiny_models),
            "--models",
            "tiny",
            "tiny-int8",
            "tiny-fact",
            "--compressed",
            "tiny-fact",
            "--baseline",
            "tiny",
            "--int8",
            "tiny-int8",
            "--st-model",
            str(tiny_model_dir),
            "--sentences",
            str(tiny_data_dir / "stsbenchmark" / "sts-test.csv"),
            "--sweep",
            str(sweep),
            "--out",
            str(out / "run"),
        ]
    )
    assert rc == 0
    return out / "run"


def test_results_json_has_every_section_for_every_contender(run):
    r = json.loads((run / "results.json").read_text())
    names = ["tiny", "tiny-int8", "tiny-fact", "sentence-transformers"]
    assert {"machine", "versions", "config", "static", "memory", "in_process", "http", "service_rss", "targets"} <= set(
        r
    )
    assert r["machine"]["cpus"] >= 1 and "onnxruntime" in r["versions"]
    assert r["server_settings"]["workers"] >= 1 and r["server_settings"]["gil_switch_ms"] > 0
    assert list(r["static"]) == names and r["static"]["tiny-fact"]["file_bytes"] > 0
    for name in names:
        probe = r["memory"][name][0]
        assert probe["rss_warm"] > probe["rss_empty"] > 0 and probe["rss_peak"] >= probe["rss_warm"]
        # the runtime libraries are resident before the model is read, and loading it adds to them
        assert probe["rss_empty"] < probe["rss_runtime"] < probe["rss_load"]
        assert probe["first_answer_s"] > 0
        modes = r["in_process"][name]
        assert set(modes) == {"b1", "b32", "mixed8"}
        assert all(s["sentences_per_s"] > 0 and s["p99_ms"] >= s["p50_ms"] for v in modes.values() for s in v)
    assert set(r["http"]) == {"tiny", "tiny-int8", "tiny-fact"}  # sentence-transformers is in-process only
    for modes in r["http"].values():
        assert set(modes) == {"c1", "c8", "batched8x2"}
        for [s] in modes.values():
            assert s["requests"] > 0 and s["statuses"] == {"200": s["requests"]} and s["transport_errors"] == 0
        # The judged modes carry their in-process ceiling, sampled just before them; the others do not.
        assert modes["c1"][0]["ceiling"]["batch"] == 1 and modes["c8"][0]["ceiling"]["batch"] == 32
        assert "ceiling" not in modes["batched8x2"][0]
    for name, mem in r["service_rss"].items():  # the service's own gauge of what its model added
        assert 0 < mem["model_load_delta"] < mem["after_warmup"] <= mem["after_load"] * 1.5, (name, mem)
        assert len(mem["after_each_rep"]) == r["config"]["reps"] and mem["after_each_rep"][-1] > 0
    assert len(r["targets"]) == 10, [t["target"] for t in r["targets"]]
    assert "tiny-fact / tiny-int8 in-process throughput at b1" in {t["target"] for t in r["targets"]}
    for t in r["targets"]:
        assert t["min"] <= t["median"] <= t["max"] and isinstance(t["met"], bool)


def test_report_and_plots(run):
    md = (run / "report.md").read_text()
    for heading in ("## Targets", "## Static", "## Memory", "## In-process", "## Over HTTP", "## Plots"):
        assert heading in md
    assert "runtime libraries MB" in md and "model's own (warm − libraries) MB" in md
    assert "model's load delta MB" in md and "rest of the process after warm-up MB" in md
    assert "the ratio a model that added nothing would reach" in md
    for png in ("throughput.png", "latency_vs_concurrency.png", "pareto.png"):
        image = matplotlib.image.imread(run / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
