"""Distillation on a tiny random BERT: the table anchor keeps rows of tokens the corpus never shows."""

import copy

import numpy as np
import pytest
import torch

from compression.errors import ConfigError
from compression.model import (
    SentenceEncoder,
    with_factorized_embedding,
    word_embedding_matrix,
)
from compression.recovery.recover import RecoverConfig, distill
from compression.sources.load import load_source
from compression.table.embeddings import FactorizedEmbedding
from compression.table.factorize import FactorizeConfig, factorize

SEEN = range(5, 60)  # the corpus uses only these ids; the rest of the vocabulary is never shown


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    src = load_source(tiny_model_dir)
    E = word_embedding_matrix(src.bert)
    counts = np.zeros(src.vocab_size)
    counts[list(SEEN)] = 100.0
    factors = factorize(E, FactorizeConfig(method="pq", rank=64, subspaces=16, codebook_size=16, alpha=0.5), counts)
    rng = np.random.default_rng(0)
    ids = [[2] + list(rng.choice(SEEN, size=int(n))) + [3] for n in rng.integers(3, 10, size=96)]
    from common.onnx_encoder import pad_ids

    batch, mask = (torch.from_numpy(a) for a in pad_ids(ids))
    with torch.no_grad():
        teacher = SentenceEncoder(src.bert)(batch, mask).numpy()
    return src, E, factors, ids, teacher


def _unseen_row_error(student: SentenceEncoder, E: np.ndarray) -> float:
    emb = student.bert.embeddings.word_embeddings
    assert isinstance(emb, FactorizedEmbedding)
    unseen = np.setdiff1d(np.arange(E.shape[0]), np.asarray(SEEN))
    with torch.no_grad():
        approx = emb(torch.from_numpy(unseen)).numpy()
    return float(((approx - E[unseen]) ** 2).sum() / (E[unseen] ** 2).sum())


def _distilled(setup, anchor: float) -> tuple[SentenceEncoder, list[float]]:
    src, E, factors, ids, teacher = setup
    student = SentenceEncoder(with_factorized_embedding(copy.deepcopy(src.bert), factors))
    config = RecoverConfig(steps=40, batch_size=16, lr=2e-2, b_lr=1e-2, anchor=anchor, anchor_tokens=64)
    losses = distill(
        student, ids, teacher, config, None, encoder_int8=False, progress=False, anchor_target=(E, np.eye(E.shape[1]))
    )
    return student, losses


def test_anchor_keeps_unseen_rows_near_the_original(setup):
    src, E, factors, _, _ = setup
    before = float(((factors.reconstruct() - E) ** 2).sum() / (E**2).sum())
    free, free_losses = _distilled(setup, 0.0)
    anchored, anchored_losses = _distilled(setup, 1.0)
    drifted, kept = _unseen_row_error(free, E), _unseen_row_error(anchored, E)
    # Without the anchor the shared centroids and B move for the seen tokens and drag the unseen rows.
    assert drifted > before * 0.98
    assert kept < drifted * 0.9
    # Both runs still fit the corpus: the curve records the fidelity term only, and it falls.
    for losses in (free_losses, anchored_losses):
        assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_anchor_needs_its_target(setup):
    src, E, factors, ids, teacher = setup
    student = SentenceEncoder(with_factorized_embedding(copy.deepcopy(src.bert), factors))
    with pytest.raises(ConfigError, match="anchor"):
        distill(student, ids, teacher, RecoverConfig(steps=2, anchor=0.5), None, encoder_int8=False, progress=False)


@pytest.mark.parametrize("kw", [{"anchor": -1.0}, {"anchor_tokens": 0}])
def test_anchor_settings_out_of_range(kw):
    with pytest.raises(ConfigError):
        RecoverConfig(steps=1, **kw)


def _token_error(student: SentenceEncoder, teacher_bert, ids) -> float:
    from common.onnx_encoder import pad_ids
    from compression.model import hidden_states
    from compression.recovery.recover import _token_loss

    batch, mask = (torch.from_numpy(a) for a in pad_ids(ids))
    with torch.no_grad():
        return float(
            _token_loss(hidden_states(student.bert, batch, mask), hidden_states(teacher_bert, batch, mask), mask)
        )


def test_token_term_trains_every_token_state_towards_the_teacher(setup):
    src, E, factors, ids, teacher = setup
    start = SentenceEncoder(with_factorized_embedding(copy.deepcopy(src.bert), factors))
    before = _token_error(start, src.bert, ids)
    errors = {}
    for weight in (0.0, 1.0):
        student = copy.deepcopy(start)
        config = RecoverConfig(steps=40, batch_size=16, lr=2e-2, b_lr=1e-2, token_weight=weight)
        losses = distill(
            student,
            ids,
            teacher,
            config,
            None,
            encoder_int8=False,
            progress=False,
            token_teacher=src.bert if weight else None,
        )
        assert np.mean(losses[-5:]) < np.mean(losses[:5])  # the curve is still the sentence term
        errors[weight] = _token_error(student, src.bert, ids)
    # The sentence term alone leaves the token states free; the token term pulls them to the teacher's.
    assert errors[1.0] < before * 0.7
    assert errors[1.0] < errors[0.0]
    assert all(not p.requires_grad for p in src.bert.parameters())  # the teacher is never trained


def test_token_term_needs_the_teacher(setup):
    src, E, factors, ids, teacher = setup
    student = SentenceEncoder(with_factorized_embedding(copy.deepcopy(src.bert), factors))
    with pytest.raises(ConfigError, match="teacher"):
        distill(
            student, ids, teacher, RecoverConfig(steps=2, token_weight=1.0), None, encoder_int8=False, progress=False
        )
    with pytest.raises(ConfigError):
        RecoverConfig(steps=1, token_weight=-0.5)
