from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import make_tiny_data, make_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """300 texts of the tiny vocabulary's words: a user's corpus for the tiny models."""
    import numpy as np

    from tests.tiny import WORDS

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 10))) for _ in range(300)) + "\n")
    return path


@pytest.fixture(scope="session")
def no_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no-data")  # no STS-B / SST-2 / TREC: fidelity is the only figure


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("data"))


TINY_RECIPES = """
[[variant]]
name = "tiny"

[[variant]]
name = "tiny-int8"
baseline = "tiny"
quantize = { table_bits = 8, encoder_int8 = true }

[[variant]]
name = "tiny-fact"
baseline = "tiny"
prune = { ffn_keep = 0.5, sentences = 64 }
recover = { steps = 6, batch_size = 8, num_sentences = 100, max_length = 16, anchor = 0.1 }
graph = { fuse_attention = true, remove_padding = true, tanh_gelu = true }
[variant.factorize]
method = "pq"
metric = "sensitivity"
metric_sentences = 32
rank = 64
subspaces = 16
codebook_size = 32
alpha = 0.5
[variant.quantize]
factors_int8 = true
positions_fp16 = true
encoder_int8 = true
smooth_alpha = 0.9
smooth_shared_qkv = true
decode_int8 = true
"""


@pytest.fixture(scope="session")
def served_models(tmp_path_factory) -> Path:
    """Torch-free model directories for service tests (tests/onnx_tiny.py): `tiny` and `tiny-fact`."""
    from tests.onnx_tiny import make_served

    return make_served(tmp_path_factory.mktemp("onnx-served"))


@pytest.fixture(scope="session")
def models_with_corrupt(served_models, tmp_path_factory) -> Path:
    """`tiny`, `tiny-fact` and `broken` (a copy of tiny whose model.onnx has one byte flipped)."""
    import shutil

    root = tmp_path_factory.mktemp("mixed")
    for name in ("tiny", "tiny-fact"):
        shutil.copytree(served_models / name, root / name)
    shutil.copytree(served_models / "tiny", root / "broken")
    data = bytearray((root / "broken" / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "broken" / "model.onnx").write_bytes(bytes(data))
    return root


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """Model directories built by the real pipeline (`build` on a recipe file) from the tiny BERT."""
    from compression.cli import main

    out = tmp_path_factory.mktemp("served")
    (out / "recipes.toml").write_text(TINY_RECIPES)
    rc = main(
        [
            "build",
            "--recipes",
            str(out / "recipes.toml"),
            "--model",
            str(tiny_model_dir),
            "--data-dir",
            str(tiny_data_dir),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert main(["heads", "--out", str(out), "--data-dir", str(tiny_data_dir), "--only", "tiny", "tiny-fact"]) == 0
    (out / "recipes.toml").unlink()
    return out


def pytest_terminal_summary(terminalreporter) -> None:
    """One closing line: the tests that skipped, each with what would run it (the skip reasons name the
    package or data that is missing; .ci/run installs the packages)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    parts = []
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        parts.append(f"{report.nodeid.split('::')[-1]} ({reason.removeprefix('Skipped: ')})")
    terminalreporter.write_line(f"skipped {len(parts)}: " + "; ".join(parts))
