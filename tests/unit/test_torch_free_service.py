"""The service end to end on the onnx.helper model directory, in a process where torch cannot be imported."""

import subprocess
import sys

from tests.conftest import REPO

CODE = """
import sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
from tests.onnx_tiny import make_model_dir
root = Path(sys.argv[1])
make_model_dir(root / "tiny")
with TestClient(create_app(Settings(models_dir=root, max_wait_ms=0))) as client:
    while not client.app.state.svc.registry.ready:
        time.sleep(0.05)
    r = client.post("/embed", json={"inputs": ["a good movie", "the plot"]})
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 2, r.text
    assert client.post("/v1/embeddings", json={"input": "x", "model": "tiny"}).status_code == 200
    assert client.get("/readyz").status_code == 200
assert "torch" not in sys.modules
print("ok")
"""


def test_the_service_runs_without_torch(tmp_path):
    blocker = tmp_path / "block" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {"PYTHONPATH": f"{blocker.parent}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path / "models")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
