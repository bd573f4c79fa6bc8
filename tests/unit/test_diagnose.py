"""compress --diagnose: the parts of a compressed model swapped for the original one at a time, so a user
sees whether the table or the int8 encoder costs the fidelity."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.manifest import Manifest
from compression.evaluation.diagnose import ExactRows
from tests.compressing import compress_cli


def test_exact_rows_replace_only_the_chosen_tokens():
    rng = np.random.default_rng(0)
    approx, E = nn.Embedding(6, 3), rng.normal(size=(6, 3)).astype(np.float32)
    exact = np.array([True, False, True, False, False, False])
    rows = ExactRows(approx, E, exact)(torch.tensor([[0, 1], [2, 3]]))
    assert torch.equal(rows[0, 0], torch.from_numpy(E[0])) and torch.equal(rows[1, 0], torch.from_numpy(E[2]))
    assert torch.equal(rows[0, 1], approx.weight[1]) and torch.equal(rows[1, 1], approx.weight[3])


def test_diagnosis_separates_the_table_from_the_encoder(tmp_path, corpus, no_data, tiny_model_dir):  # noqa: F811
    # encoder_lr 0: with the table exact and the encoder in fp32 the student *is* the source model, so
    # that case must reproduce the baseline; a coarse table (ratio 6) must cost more than the swap leaves.
    assert (
        compress_cli(
            tiny_model_dir,
            tmp_path,
            corpus,
            no_data,
            "--diagnose",
            "--set",
            "recover.encoder_lr=0",
            "--target-ratio",
            "6",
        )
        == 0
    )
    manifest = Manifest.read(tmp_path / "tiny-bert-fact")
    cases = {row["case"]: row for row in manifest.diagnosis}
    assert list(cases) == [
        "as built",
        "rows of tokens seen < 10 times exact",
        "rows of tokens seen < 100 times exact",
        "every row exact",
        "encoder in fp32",
        "every row exact, encoder in fp32",
    ]
    assert cases["every row exact"]["rows_exact"] == manifest.source["vocab_size"]
    assert (
        cases["as built"]["rows_exact"]
        <= cases["rows of tokens seen < 10 times exact"]["rows_exact"]
        <= cases["rows of tokens seen < 100 times exact"]["rows_exact"]
        <= cases["every row exact"]["rows_exact"]
    )
    assert cases["every row exact, encoder in fp32"]["fidelity_mean"] > 0.9999
    assert cases["every row exact"]["fidelity_mean"] > cases["as built"]["fidelity_mean"]
    # The simulation is what the exported file computes: its held-out figure is the same to within rounding.
    assert abs(cases["as built"]["fidelity_mean"] - manifest.quality.heldout_fidelity_mean) < 2e-3


def test_no_diagnosis_unless_asked(tmp_path, corpus, no_data, tiny_model_dir):  # noqa: F811
    assert compress_cli(tiny_model_dir, tmp_path, corpus, no_data) == 0
    assert Manifest.read(tmp_path / "tiny-bert-fact").diagnosis == []


def _damage_case(tiny_model_dir, table_rank: int, weight_levels: int) -> dict[str, dict]:
    """diagnose() on the tiny model with its table cut to `table_rank` and its encoder's int8 simulated with
    `weight_levels` levels: the held-out fidelity of each case, by name."""
    from compression.evaluation.diagnose import Simulation, diagnose
    from compression.model import SentenceEncoder, with_factorized_embedding, word_embedding_matrix
    from compression.sources.load import load_source
    from compression.table.factorize import FactorizeConfig, factorize

    src = load_source(tiny_model_dir)
    E = word_embedding_matrix(src.bert)
    V, H = E.shape
    rng = np.random.default_rng(0)
    ids = [[int(t) for t in rng.integers(5, V, rng.integers(3, 12))] for _ in range(64)]
    reference = SentenceEncoder(src.bert, src.pooling)
    with torch.no_grad():
        from compression.evaluation.diagnose import encode_ids

        reference_nd = encode_ids(reference, ids)
    rank = min(table_rank, H - 1)
    student = with_factorized_embedding(src.bert, factorize(E, FactorizeConfig(method="svd", rank=rank)))
    counts = np.zeros(V, int)
    rows = diagnose(
        SentenceEncoder(student, src.pooling),
        E,
        counts,
        ids,
        reference_nd,
        Simulation(encoder_int8=True, weight_levels=weight_levels),
    )
    return {r["case"]: r["fidelity_mean"] for r in rows}


def test_a_damaged_table_is_blamed_on_the_table(tiny_model_dir):
    cases = _damage_case(tiny_model_dir, table_rank=2, weight_levels=127)
    lost = 1 - cases["as built"]
    assert cases["every row exact"] - cases["as built"] > 0.8 * lost  # the table holds the loss
    assert cases["encoder in fp32"] - cases["as built"] < 0.2 * lost


def test_a_damaged_encoder_is_blamed_on_the_encoder(tiny_model_dir):
    cases = _damage_case(tiny_model_dir, table_rank=10**6, weight_levels=1)
    lost = 1 - cases["as built"]
    assert cases["encoder in fp32"] - cases["as built"] > 0.8 * lost  # the int8 encoder holds the loss
    assert cases["every row exact"] - cases["as built"] < 0.2 * lost
