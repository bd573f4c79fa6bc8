"""OnnxBackend's tokenization: one non-truncating tokenizer whose ids are cut by hand. On a model
directory made with onnx.helper: the service's tests need no torch."""

from __future__ import annotations

import numpy as np
import pytest

from common import contract
from common.onnx_encoder import SessionConfig, load_tokenizer
from service.runtime import OnnxBackend
from tests.onnx_tiny import make_model_dir

LONG = "the quick brown fox jumps over the lazy dog " * 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("onnx-tiny") / "tiny")


@pytest.mark.parametrize("max_length", [3, 8, 16])
def test_truncation_equals_the_tokenizers_own(model_dir, max_length):
    backend = OnnxBackend(model_dir, max_length)
    reference = load_tokenizer(model_dir / contract.TOKENIZER_FILE, max_length)
    reference.no_padding()
    few = [LONG, "short text", LONG[: 5 * max_length]]
    for texts in (few[:1], few, few * 3):  # one at a time up to SERIAL_TOKENIZE_MAX, then the batch call
        got = [t.ids.tolist() for t in backend.tokenize(texts, truncate=True)]
        assert got == [e.ids for e in reference.encode_batch(texts)]
        assert max(len(ids) for ids in got) == max_length


def test_untruncated_text_comes_whole_with_its_special_tokens_counted(model_dir):
    backend = OnnxBackend(model_dir, 8)
    short, long = backend.tokenize(["short", LONG], truncate=False)
    assert len(short.ids) == 3 and (short.head, short.tail) == (1, 1)  # [CLS] short [SEP]
    assert len(long.ids) > 8 and (long.head, long.tail) == (1, 1)  # every id, for the windows


class _RecordingSession:
    """Wraps a real session and records the RunOptions each run was given."""

    def __init__(self, session):
        self.session, self.options = session, []

    def run(self, outputs, feeds, run_options=None):
        self.options.append(run_options)
        return self.session.run(outputs, feeds, run_options)


def test_only_batches_over_the_kept_size_shrink_the_arena(model_dir):
    backend = OnnxBackend(model_dir, 16, SessionConfig(arena_keep_tokens=20))
    backend.session = recorder = _RecordingSession(backend.session)
    small = backend.tokenize(["a b c"] * 2, truncate=True)  # 2 × 5 tokens
    large = backend.tokenize([LONG] * 4, truncate=True)  # 4 × 16 tokens
    backend.run(small)
    backend.run(large)
    assert [o is not None for o in recorder.options] == [False, True]
    assert np.allclose(backend.run(large), backend.run(large))  # shrinking changes no answer


def test_no_shrinking_without_the_arena_or_a_limit(model_dir):
    for config in (SessionConfig(arena=False, arena_keep_tokens=1), SessionConfig(arena_keep_tokens=None)):
        backend = OnnxBackend(model_dir, 16, config)
        backend.session = recorder = _RecordingSession(backend.session)
        backend.run(backend.tokenize([LONG] * 4, truncate=True))
        assert recorder.options == [None]
