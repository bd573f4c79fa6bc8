"""The parent's side of the runner's protocol: every contender's process loaded at once, then sampled
in turn, round after round. On this host a process's speed drifts by up to a third over minutes, so
contenders measured one after another carry that drift into their ratios; sampled in alternation,
each round's ratio is taken under one host speed and the median over rounds is what is reported."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import Peer
from .venvs import python_of

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "runner.py"
LOAD_TIMEOUT_S = 1800  # a first run exports and quantizes sentence-transformers' ONNX files, or distils
PAUSE_S = 0.2  # between samples: a contender's spinning threads go idle before the next one runs


class Worker:
    """One contender's runner process, loaded and waiting for sample requests."""

    def __init__(self, peer: Peer, model: Path, work: Path, texts_file: Path, out: Path, venvs: Path):
        self.peer, self.out = peer, out
        python = Path(sys.executable) if peer.venv is None else python_of(peer.venv, venvs)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "true",
            "PYTHONPATH": str(REPO) if peer.venv is None else "",
        }
        self._log = out.with_suffix(".log")
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(
                [
                    str(python),
                    str(RUNNER),
                    "--peer",
                    peer.runner,
                    "--model",
                    str(model),
                    "--work",
                    str(work),
                    "--texts",
                    str(texts_file),
                    "--out",
                    str(out),
                ],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._answer(LOAD_TIMEOUT_S, expect="ready")

    def _answer(self, timeout: float, expect: str | None = None) -> str:
        """The runner's next line, or SystemExit with its last log line if it died or went silent."""
        selector = selectors.DefaultSelector()
        selector.register(self._proc.stdout, selectors.EVENT_READ)
        line = self._proc.stdout.readline() if selector.select(timeout) else ""
        selector.close()
        if not line or (expect is not None and line.strip() != expect):
            self._fail()
        return line

    def _fail(self) -> None:
        """Stop the runner and end the run with the last line it logged."""
        self.kill()
        last = (self._log.read_text().strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"peer {self.peer.name} failed: {last}")

    def sample(self, batch: int, seconds: float) -> dict:
        self._proc.stdin.write(f"{batch} {seconds}\n")
        self._proc.stdin.flush()
        return json.loads(self._answer(seconds * 4 + 120))

    def close(self) -> dict:
        """The runner's result file (configuration, memory) with its embeddings as `vectors`."""
        self._proc.stdin.write("quit\n")
        self._proc.stdin.close()
        if self._proc.wait(timeout=120) != 0:
            self._fail()
        result = json.loads(self.out.read_text())
        result["vectors"] = np.load(self.out.with_suffix(".npy"))
        return result

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def measure(
    peers: list[tuple[Peer, Path]], work: Path, texts_file: Path, out: Path, venvs: Path, rounds: int, seconds: float
) -> dict[str, dict]:
    """Each contender's result with `b1`/`b32`: the median over rounds of texts/s and of the median batch
    latency, and every round's texts/s under `rounds` (for per-round ratios)."""
    workers: list[Worker] = []
    try:
        for peer, model in peers:  # loaded one at a time: load time and memory are each its own
            print(f"peers: loading {peer.name} …", file=sys.stderr, flush=True)
            workers.append(Worker(peer, model, work, texts_file, out / f"{peer.name}.json", venvs))
        samples: dict[str, dict[str, list[dict]]] = {w.peer.name: {"b1": [], "b32": []} for w in workers}
        for r in range(rounds):
            print(f"peers: round {r + 1}/{rounds} …", file=sys.stderr, flush=True)
            for batch in (1, 32):
                for w in workers:
                    time.sleep(PAUSE_S)
                    samples[w.peer.name][f"b{batch}"].append(w.sample(batch, seconds))
        results = {w.peer.name: w.close() for w in workers}
    finally:
        for w in workers:
            w.kill()
    for name, by_batch in samples.items():
        for b, runs in by_batch.items():
            results[name][b] = {
                "texts_per_s": round(float(np.median([s["texts_per_s"] for s in runs])), 1),
                "median_ms": round(float(np.median([s["median_ms"] for s in runs])), 3),
                "rounds": [s["texts_per_s"] for s in runs],
            }
    return results
