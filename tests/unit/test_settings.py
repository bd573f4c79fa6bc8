"""Settings come from EMBED_* variables, and docs/configuration.md lists every one with its default."""

import re
from pathlib import Path

from service.settings import Settings

CONFIGURATION = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("EMBED_PORT", "9123")
    monkeypatch.setenv("EMBED_API_KEY", "s3cr3t-value")
    monkeypatch.setenv("EMBED_SHADOW_RATE", "0.25")
    s = Settings()
    assert s.port == 9123 and s.api_key.get_secret_value() == "s3cr3t-value" and s.shadow_rate == 0.25
    assert "s3cr3t-value" not in repr(s)


def test_configuration_page_matches_settings():
    rows = dict(re.findall(r"^\| `(EMBED_[A-Z0-9_]+)` \| `?([^`|]+?)`? \|", CONFIGURATION, flags=re.M))
    fields = Settings.model_fields
    assert set(rows) == {f"EMBED_{name.upper()}" for name in fields}
    for name, field in fields.items():
        default = field.default
        shown = rows[f"EMBED_{name.upper()}"]
        if default is None:
            assert shown == "unset"
        else:
            assert shown == str(default), name


def test_cores_are_shared_out_among_the_workers(monkeypatch):
    """EMBED_THREADS counts cores for a model; each worker's onnxruntime session thread count is its share."""
    import os

    monkeypatch.setenv("EMBED_THREADS", "4")
    monkeypatch.setenv("EMBED_WORKERS", "2")
    assert Settings().session_config().threads == 2
    monkeypatch.setenv("EMBED_WORKERS", "1")
    assert Settings().session_config().threads == 4
    monkeypatch.setenv("EMBED_THREADS", "0")
    assert Settings().session_config().threads == 0  # one worker: onnxruntime picks one thread per core
    monkeypatch.setenv("EMBED_WORKERS", "3")
    assert Settings().session_config().threads == max(1, (os.cpu_count() or 1) // 3)
