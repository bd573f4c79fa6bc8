"""The sweep writes its points and a readable PNG on a tiny model."""

import json
import shutil

from compression.cli import main


def test_sweep_writes_points_and_plot(tiny_models, tiny_model_dir, tiny_data_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "tiny", models / "tiny")
    report = tmp_path / "report"
    rc = main(
        [
            "sweep",
            "--out",
            str(models),
            "--model",
            str(tiny_model_dir),
            "--data-dir",
            str(tiny_data_dir),
            "--report-dir",
            str(report),
            "--ranks",
            "4",
            "16",
            "--methods",
            "svd",
            "weighted",
            "pq",
            "--subspaces",
            "8",
            "16",
            "--baseline",
            "tiny",
            "--no-progress",
        ]
    )
    assert rc == 0
    points = json.loads((report / "sweep.json").read_text())
    sweep = [p for p in points if p["source"] == "sweep"]
    assert {(p["method"], p["rank"]) for p in sweep} == {
        ("svd", 4),
        ("svd", 16),
        ("weighted", 4),
        ("weighted", 16),
        ("pq", 64),
    }
    # Bytes are read from each exported graph: fp32 A and B for svd; one-byte codes, int64 group offsets,
    # centroids (K = V here) and B for pq.
    V, H = 160, 64
    assert [p["embedding_bytes"] for p in sweep if p["method"] == "svd"] == [(V * r + r * H) * 4 for r in (4, 16)]
    assert [p["embedding_bytes"] for p in sweep if p["method"] == "pq"] == [
        V * m + m * 8 + (V * H + H * H) * 4 for m in (8, 16)
    ]
    assert any(p["source"] == "variant" and p["method"] == "tiny" for p in points)
    svd = {p["rank"]: p for p in sweep if p["method"] == "svd"}
    assert svd[16]["fidelity_mean"] > svd[4]["fidelity_mean"]  # more rank, closer to the baseline
    png = (report / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_sweep_draws_one_curve_per_metric(tiny_models, tiny_model_dir, tiny_data_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "tiny", models / "tiny")
    rc = main(
        [
            "sweep",
            "--out",
            str(models),
            "--model",
            str(tiny_model_dir),
            "--data-dir",
            str(tiny_data_dir),
            "--report-dir",
            str(tmp_path / "report"),
            "--ranks",
            "8",
            "--methods",
            "weighted",
            "--metrics",
            "euclidean",
            "sensitivity",
            "--baseline",
            "tiny",
            "--no-progress",
        ]
    )
    assert rc == 0
    sweep = [p for p in json.loads((tmp_path / "report" / "sweep.json").read_text()) if p["source"] == "sweep"]
    assert sorted(p["method"] for p in sweep) == ["weighted", "weighted+sensitivity"]
    assert all(0 < p["fidelity_mean"] <= 1 for p in sweep)
