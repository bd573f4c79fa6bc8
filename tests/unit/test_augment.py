"""Rare-token augmentation of the distillation corpus."""

import numpy as np
import pytest

from compression.recovery.augment import rare_tokens, replace_tokens


def test_rare_tokens_leave_out_specials_reserved_rows_and_frequent_tokens():
    vocab = {"[PAD]": 0, "[unused0]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "zebra": 5, "##ish": 6, "[unused12]": 7}
    counts = np.array([0, 0, 100, 100, 500, 0, 3, 0])
    assert rare_tokens(counts, vocab, below=10).tolist() == [5, 6]
    assert rare_tokens(counts, vocab, below=1).tolist() == [5]


def test_replace_tokens_swaps_inner_positions_only_and_is_seeded():
    ids = [[101, 7, 8, 9, 102], [101, 5, 102], [101, 102], [101, 1, 2, 3, 4, 5, 6, 102]]
    candidates = np.array([900, 901, 902])
    out = replace_tokens(ids, candidates, share=1.0, per_sentence=2, seed=0)
    assert out == replace_tokens(ids, candidates, share=1.0, per_sentence=2, seed=0)
    assert len(out) == 3  # [CLS] [SEP] alone has nothing to swap
    originals = {len(r): r for r in ids}
    for row in out:
        src = originals[len(row)]
        assert row[0] == 101 and row[-1] == 102
        changed = [k for k in range(len(row)) if row[k] != src[k]]
        assert 1 <= len(changed) <= min(2, len(row) - 2)
        assert all(row[k] in candidates for k in changed)
    assert ids[0] == [101, 7, 8, 9, 102]  # the input is not modified
    swappable = [r for r in ids if len(r) > 2]
    assert len(replace_tokens(swappable, candidates, share=2 / 3, per_sentence=1, seed=1)) == 2
    assert replace_tokens(ids, candidates, share=0.0, per_sentence=1, seed=1) == []


@pytest.mark.parametrize("share, per", [(-0.1, 1), (1.5, 1), (0.5, 0)])
def test_replace_tokens_refuses_bad_settings(share, per):
    with pytest.raises(ValueError):
        replace_tokens([[1, 2, 3]], np.array([5]), share, per, 0)
