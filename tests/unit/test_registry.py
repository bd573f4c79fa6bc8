"""The registry: each model's resident-memory gauge counts the model, not the libraries every model runs
on; models with the same tokenizer file share one tokenizer; a broken tokenizer file is refused by name."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import contract
from common.onnx_encoder import SessionConfig
from service.registry import LoadError, Registry, read_model_dir

REPO = Path(__file__).resolve().parents[2]

# A fresh interpreter: onnxruntime and tokenizers are not imported yet when the registry starts.
PROBE = """
import json, sys
from pathlib import Path
import psutil
from common.onnx_encoder import SessionConfig
from service.registry import Registry
proc = psutil.Process()
before = proc.memory_info().rss
registry = Registry("tiny")
registry.load_dir(Path(sys.argv[1]), SessionConfig(threads=1))
print(json.dumps({"grown": proc.memory_info().rss - before,
                  "models": {m.name: m.resident_bytes for m in registry.models.values()}}))
"""


def test_library_imports_are_not_charged_to_the_first_model(served_models):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(served_models)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(r["models"]) >= 2 and all(v > 0 for v in r["models"].values()), r
    # Importing onnxruntime and tokenizers takes ~25 MB; outside every model's delta it stays.
    outside = r["grown"] - sum(r["models"].values())
    assert outside > 10 * 2**20, r


def test_models_with_the_same_tokenizer_file_share_one_tokenizer(served_models, tmp_path):
    for name in ("tiny", "tiny-fact"):
        shutil.copytree(served_models / name, tmp_path / name)
    shutil.copytree(served_models / "tiny", tmp_path / "tiny-other-vocab")
    # Same vocabulary, other bytes: a different file, so a tokenizer of its own.
    other = tmp_path / "tiny-other-vocab" / contract.TOKENIZER_FILE
    other.write_text(json.dumps(json.loads(other.read_text()), indent=1))
    manifest = tmp_path / "tiny-other-vocab" / contract.MANIFEST_FILE
    described = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**described, "name": "tiny-other-vocab"}))

    registry = Registry("tiny")
    registry.load_dir(tmp_path, SessionConfig(threads=1))
    models = registry.models
    assert set(models) == {"tiny", "tiny-fact", "tiny-other-vocab"}, registry.failed
    assert models["tiny"].backend.tokenizer is models["tiny-fact"].backend.tokenizer
    assert models["tiny-other-vocab"].backend.tokenizer is not models["tiny"].backend.tokenizer
    text = ["the quick brown fox"]
    assert [t.ids.tolist() for t in models["tiny-other-vocab"].backend.tokenize(text, True)] == [
        t.ids.tolist() for t in models["tiny"].backend.tokenize(text, True)
    ]


def test_a_broken_tokenizer_file_is_refused_by_name(served_models, tmp_path):
    shutil.copytree(served_models / "tiny", tmp_path / "tiny")
    (tmp_path / "tiny" / contract.TOKENIZER_FILE).write_text('{"model": ')
    with pytest.raises(LoadError, match=f"^bad {contract.TOKENIZER_FILE}: "):
        read_model_dir(tmp_path / "tiny", SessionConfig(threads=1))
