"""compress --min-fidelity end to end on the tiny model: real builds, one after another, until a table
reaches the target (the search's logic alone, with the build stubbed, is tests/unit/test_default_search.py)."""

from __future__ import annotations

import pytest

from common.manifest import Manifest
from tests.compressing import compress_cli

pytestmark = pytest.mark.slow


def test_min_fidelity_builds_larger_tables_until_one_reaches_it(tmp_path, capsys, corpus, no_data, tiny_model_dir):
    # Reachable at once: one attempt, recorded.
    assert compress_cli(tiny_model_dir, tmp_path / "easy", corpus, no_data, "--min-fidelity", "0.5") == 0
    easy = Manifest.read(tmp_path / "easy" / "tiny-bert-fact")
    assert easy.sizing["met"] and len(easy.sizing["attempts"]) == 1
    # Unreachable: every larger table is tried, the largest stays built, and the command says so in one line.
    capsys.readouterr()
    assert (
        compress_cli(
            tiny_model_dir, tmp_path / "hard", corpus, no_data, "--target-ratio", "16", "--min-fidelity", "0.99999999"
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no table reached held-out fidelity" in err[0]
    hard = Manifest.read(tmp_path / "hard" / "tiny-bert-fact")
    attempts = hard.sizing["attempts"]
    assert not hard.sizing["met"] and len(attempts) > 1
    ratios = [a["table_ratio"] for a in attempts]
    assert ratios == sorted(ratios, reverse=True) and len(set(ratios)) == len(ratios)  # ever larger tables
    assert attempts[-1]["heldout_fidelity_mean"] == hard.quality.heldout_fidelity_mean  # the last one is kept


def test_min_fidelity_int8_is_measured_on_the_same_held_out_texts(tmp_path, corpus, no_data, tiny_model_dir):
    assert compress_cli(tiny_model_dir, tmp_path, corpus, no_data, "--min-fidelity", "int8") in (0, 2)
    sizing = Manifest.read(tmp_path / "tiny-bert-fact").sizing
    assert isinstance(sizing["min_fidelity"], float) and 0.5 < sizing["min_fidelity"] <= 1
    assert sizing["min_fidelity"] >= max(sizing["int8"][0], 0.99) and sizing["min_fidelity_p1"] >= 0.97
    met = [
        a["heldout_fidelity_mean"] >= sizing["min_fidelity"] and a["heldout_fidelity_p1"] >= sizing["min_fidelity_p1"]
        for a in sizing["attempts"]
    ]
    assert met[-1] == sizing["met"] and not any(met[:-1])  # it stops at the first table that reaches it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".cache") == ["tiny-bert", "tiny-bert-fact"]
