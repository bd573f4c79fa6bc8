"""Per-language evaluation: file names give languages, a language under int8 is named with its gap and
keeps the int8 target unmet, and compress --eval records every language beside int8's figures."""

from __future__ import annotations

import numpy as np
import pytest

from common.manifest import Manifest
from compression.api import FidelityTarget
from compression.cli import main
from compression.errors import CorpusError
from compression.evaluation.languages import falling_languages, language_of, load_pair_sets, worst_language
from tests.compressing import QUICK
from tests.tiny import WORDS


def test_languages_come_from_file_names(tmp_path):
    assert language_of(tmp_path / "stsb-de-dev.csv") == "de" and language_of(tmp_path / "sts-test.csv") == "en"
    assert language_of(tmp_path / "my-pairs.csv") == "my-pairs"
    for name in ("stsb-de-dev.csv", "stsb-de-train.csv"):
        (tmp_path / name).write_text("a b,c d,1.0\n")
    with pytest.raises(CorpusError, match="both language 'de'"):
        load_pair_sets([tmp_path])


def test_a_language_under_int8_is_named_and_misses_the_target():
    rows = {
        "de": {"fidelity_mean": 0.995, "fidelity_p1": 0.98, "int8_fidelity_mean": 0.99, "int8_fidelity_p1": 0.97},
        "ja": {"fidelity_mean": 0.985, "fidelity_p1": 0.97, "int8_fidelity_mean": 0.99, "int8_fidelity_p1": 0.96},
    }
    assert falling_languages(rows) == {"ja": (0.005, -0.01)} and worst_language(rows) == "ja"
    target = FidelityTarget(0.99, 0.97, (0.99, 0.97))
    assert target.met_by(0.995, 0.98) and not target.met_by(0.995, 0.98, rows)
    assert FidelityTarget(0.99).met_by(0.995, 0.98, rows)  # a plain number holds the held-out texts only


def test_compress_with_eval_records_every_language(tmp_path):
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 10))) for _ in range(300)) + "\n")
    evals = tmp_path / "eval"
    evals.mkdir()
    for lang in ("xx", "yy"):
        rows = [
            f"{' '.join(rng.choice(WORDS, 5))},{' '.join(rng.choice(WORDS, 5))},{rng.uniform(0, 5):.2f}"
            for _ in range(40)
        ]
        (evals / f"stsb-{lang}-dev.csv").write_text("sentence1,sentence2,score\n" + "\n".join(rows) + "\n")
    from tests.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny-bert")
    no_data = tmp_path / "no-data"
    no_data.mkdir()
    assert (
        main(
            [
                "compress",
                "--model",
                str(model),
                "--out",
                str(tmp_path / "out"),
                "--corpus",
                str(corpus),
                "--data-dir",
                str(no_data),
                "--eval",
                str(evals),
                *QUICK,
            ]
        )
        == 0
    )
    langs = Manifest.read(tmp_path / "out" / "tiny-bert-fact").languages
    assert set(langs) == {"xx", "yy"}
    for row in langs.values():
        assert row["pairs"] == 40 and 0 < row["fidelity_mean"] <= 1 and 0 < row["int8_fidelity_mean"] <= 1
        assert -100 <= row["stsb_spearman"] <= 100 and -100 <= row["baseline_stsb_spearman"] <= 100
    from compression.evaluation.report import rows

    built = [Manifest.read(tmp_path / "out" / n) for n in ("tiny-bert", "tiny-bert-fact")]
    shown = {r["variant"]: r for r in rows(built)}
    worst = min(langs, key=lambda k: langs[k]["fidelity_mean"])
    assert shown["tiny-bert-fact"]["worst language"].startswith(f"{worst} {langs[worst]['fidelity_mean']} (int8 ")
    assert shown["tiny-bert"]["worst language"] is None
