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
def tiny_data_dir(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("data"))
