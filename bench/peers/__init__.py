"""What a user would deploy instead, measured side by side with ours (`python -m bench.peers`).

Each peer runs in its own virtual environment, created by the benchmark from the pins below (their
pins conflict with ours and with each other), and every contender — ours included — is measured by
the same runner (bench/peers/runner.py) in a fresh process, on the same local all-MiniLM-L6-v2.
The runner runs as a script, so its folder is first on sys.path: no module here may take a standard
library name (an `http.py` here broke every peer's `import http`)."""

from __future__ import annotations

from dataclasses import dataclass

TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; any looser pin pulls a CUDA build


@dataclass(frozen=True)
class Peer:
    name: str
    runner: str  # the runner's --peer
    venv: str | None  # which environment (None: this repository's own interpreter)
    model: str  # "source" (the original model folder) or a models/ variant name


# Environments: name → pip requirements, installed in order (torch first and alone where needed).
VENVS: dict[str, tuple[tuple[str, ...], ...]] = {
    # sentence-transformers 6's onnx extra needs an optimum-onnx release the registry lacks; 5.1.2 is
    # the newest whose extra resolves here.
    "st-onnx": (
        (TORCH,),
        ("sentence-transformers[onnx]==5.1.2", "optimum-onnx==0.1.0", "optimum==2.1.0", "transformers==4.57.6"),
    ),
    "fastembed": (("fastembed==0.9.1",),),
    "model2vec": ((TORCH,), ("model2vec[distill,quantization]==0.10.0",)),
    # infinity-emb pins numpy < 2 and its own optimum; torch is pinned again so pip keeps the CPU build
    "infinity": ((TORCH,), ("infinity-emb[server,optimum]==0.0.78", TORCH)),
}

REFERENCE = "minilm-l6"  # fidelity is cosine to the fp32 model's embedding
OURS = "minilm-l6-fact"
