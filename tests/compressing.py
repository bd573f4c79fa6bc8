"""What the tests of `compress` share: a quick recovery, texts to compare sources on, the one command
with them, and the check that both directories it writes load in the service as a pair."""

from __future__ import annotations

import numpy as np

from common.manifest import Manifest
from compression.cli import main

TEXTS = ["The movie was GREAT", "who is the man", "a", "Ünïcode Café plays", "the dog plays music in the city " * 9]
# A recovery short enough for a unit test; the ratio a 160×H toy table can reach.
QUICK = [
    "--target-ratio",
    "3",
    "--set",
    "recover.steps=4",
    "--set",
    "recover.batch_size=8",
    "--set",
    "recover.num_sentences=64",
    "--no-progress",
    "--no-heads",
]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compress_cli(model, out, corpus, data_dir, *extra) -> int:
    return main(
        [
            "compress",
            "--model",
            str(model),
            "--out",
            str(out),
            "--corpus",
            str(corpus),
            "--data-dir",
            str(data_dir),
            *QUICK,
            *extra,
        ]
    )


def assert_served_pair(out, name: str) -> tuple[Manifest, Manifest]:
    """Both directories load in the service's registry, paired by the manifest's baseline."""
    from common.onnx_encoder import SERVING
    from service.registry import Registry

    base, fact = Manifest.read(out / name), Manifest.read(out / f"{name}-fact")
    assert fact.baseline == name and base.baseline is None
    registry = Registry(None)
    registry.load_dir(out, SERVING)
    assert not registry.failed, registry.failed
    assert registry.baseline_of(registry.models[f"{name}-fact"]).name == name
    assert registry.choose_default(None) == f"{name}-fact"
    return base, fact
