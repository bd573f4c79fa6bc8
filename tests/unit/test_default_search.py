"""The no-flag default's search, with the build stubbed: it starts at start_ratio(V), builds larger
tables until one reaches the model's own int8 (mean and 1st percentile, never under the floor), records
the target and the ratio it reached, and says so in its last line; a fixed size skips the search."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from common.manifest import Manifest
from compression import build as build_mod
from compression.api import compress
from compression.errors import PipelineError
from compression.evaluation import int8_reference
from compression.model import Pooling


def fake_source(tmp_path, vocab: int):
    return SimpleNamespace(
        name="m",
        path=tmp_path / "src",
        vocab_size=vocab,
        hidden_size=384,
        prompts=None,
        default_prompt_name=None,
        pooling=Pooling("mean", True),
        max_seq_length=128,
    )


def manifest_for(recipe, fidelity: tuple[float, float]) -> Manifest:
    return Manifest.model_validate(
        {
            "name": recipe.name,
            "base_model": "m",
            "baseline": recipe.baseline,
            "method": recipe.method,
            "rank": None,
            "quantization": "x",
            "dim": 384,
            "max_seq_length": 128,
            "params": {"embedding": 1, "encoder": 1, "total": 2},
            # a pq table of `codes` bytes per row, as sizing stores it (ratio read back by the search)
            "bytes": {"file": 1, "embedding": (recipe.factorize.subspaces if recipe.factorize else 1536) * VOCAB[0]},
            "sha256": "0",
            "quality": {
                "fidelity_mean": fidelity[0],
                "fidelity_p1": fidelity[1],
                "heldout_fidelity_mean": fidelity[0],
                "heldout_fidelity_p1": fidelity[1],
            },
            "recipe": {},
            "versions": {},
        }
    )


VOCAB = [30522]


@pytest.fixture
def stubbed(tmp_path, monkeypatch):
    """compress() with the source, the int8 measurement and every build stubbed; returns the builds' log."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"text {i}" for i in range(50)) + "\n")
    built: list = []
    by_codes: dict[int, tuple[float, float]] = {}

    def build_variant(recipe, ctx):
        codes = recipe.factorize.subspaces if recipe.factorize else None
        built.append(codes)
        manifest = manifest_for(recipe, by_codes.get(codes, (0.5, 0.5)))
        (ctx.out_root / recipe.name).mkdir(parents=True, exist_ok=True)
        manifest.write(ctx.out_root / recipe.name)
        return manifest

    def run(fidelity_by_codes, int8=(0.992, 0.981), vocab=30522, seen_often=0, **kw):
        """seen_often: rows the corpus shows often enough for the tier (0: every row sized alike)."""
        VOCAB[0] = vocab
        by_codes.clear()
        by_codes.update(fidelity_by_codes)
        built.clear()
        monkeypatch.setattr(build_mod.BuildContext, "source", property(lambda self: fake_source(tmp_path, vocab)))
        monkeypatch.setattr(int8_reference, "int8_heldout_fidelity", lambda ctx, name: int8)
        monkeypatch.setattr(build_mod, "build_variant", build_variant)
        counts = (np.arange(vocab) < seen_often) * 100
        monkeypatch.setattr(build_mod.BuildContext, "counts", lambda self, corpus: counts)
        return compress(
            tmp_path / "src", tmp_path / "out", corpus=corpus, data_dir=tmp_path, heads=False, progress=False, **kw
        )

    run.built = built
    return run


def test_the_first_table_as_faithful_as_int8_is_kept(stubbed, caplog):
    caplog.set_level(logging.INFO, logger="compression")
    # 16× (88 codes) misses int8's p1 though its mean is above; 12× (120 codes) reaches both.
    m = stubbed({88: (0.993, 0.975), 120: (0.994, 0.983)})
    assert stubbed.built == [None, 88, 120]  # the baseline, then 16×, then 12×
    s = m.sizing
    assert s["met"] and s["int8"] == [0.992, 0.981] and (s["min_fidelity"], s["min_fidelity_p1"]) == (0.992, 0.981)
    assert [a["codes"] for a in s["attempts"]] == [88, 120] and s["table_ratio"] == s["attempts"][-1]["table_ratio"]
    assert "held to 0.99200 / p1 0.98100 (onnxruntime's plain int8 measured" in caplog.records[-1].getMessage()


def test_the_floor_holds_where_int8_itself_is_poor(stubbed):
    m = stubbed({88: (0.985, 0.96), 120: (0.9905, 0.975)}, int8=(0.98, 0.95))
    assert (m.sizing["min_fidelity"], m.sizing["min_fidelity_p1"]) == (0.99, 0.97)
    assert m.sizing["attempts"][-1]["codes"] == 120


def test_a_large_vocabulary_starts_at_32x(stubbed):
    from compression.table.sizing import sized_recipe

    codes = sized_recipe("a", "b", 250037, 384, target_ratio=32).factorize.subspaces
    stubbed({codes: (0.995, 0.99)}, vocab=250037)
    assert stubbed.built == [None, codes]  # met at once at 32× smaller


def test_none_reaching_it_keeps_the_largest_and_says_so(stubbed):
    with pytest.raises(PipelineError, match="no table reached held-out fidelity 0.99200 / p1 0.98100"):
        stubbed({})
    assert stubbed.built[-1] == 375 and len(stubbed.built) == 5  # 16×, 12×, 8×, 4×, after the baseline


def test_a_fixed_size_builds_once_without_a_target(stubbed):
    m = stubbed({}, target_ratio=16)
    assert stubbed.built == [None, 88] and m.sizing == {}


def test_a_corpus_that_reads_many_rows_gets_a_tier_first(stubbed):
    """16× with a tier over the 11,000 rows the corpus shows often; the larger tables after it are plain."""
    m = stubbed({120: (0.994, 0.983)}, seen_often=11000)
    first = m.sizing["attempts"][0]
    assert first["tier"] == {"rows": 11000, "codes": first["codes"]} and first["codes"] < 88
    assert m.sizing["attempts"][-1]["tier"] == {"rows": 0, "codes": 0} and m.sizing["attempts"][-1]["codes"] == 120
