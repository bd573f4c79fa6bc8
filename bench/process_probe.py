"""One contender in a fresh process: memory after load, after a warm batch, peak during
batch-32 runs, and the time to the first answer. The parent runs it as

    python -m bench.process_probe KIND PATH TEXTS_JSON BATCHES

and reads one JSON line. Only the standard library and psutil are imported before the
first measurement, so `rss_empty` is an empty interpreter's resident memory. `rss_runtime`
follows the import of the libraries the contender runs on (onnxruntime, tokenizers, numpy
and the service's backend; or torch and sentence-transformers) before any model is read:
what any model costs, so what is left above it is the model's own.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import psutil


def import_runtime(kind: str) -> None:
    """Import what `bench.contenders.load` will use for this kind of contender, and nothing else."""
    if kind == "onnx":
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        import service.runtime  # noqa: F401
    elif kind == "st":
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401


def main() -> None:
    kind, path, texts_file, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    proc = psutil.Process()
    rss_empty = proc.memory_info().rss
    from pathlib import Path

    from bench.contenders import Contender, load

    texts = json.loads(Path(texts_file).read_text())
    import_runtime(kind)
    rss_runtime = proc.memory_info().rss
    encode = load(Contender("probe", kind, Path(path)))
    rss_load = proc.memory_info().rss
    encode(texts[:1])
    first_answer = time.time() - proc.create_time()  # process start -> first embedding
    encode(texts[:32])
    rss_warm = proc.memory_info().rss
    for i in range(batches):
        encode(texts[32 * i % len(texts) :][:32] or texts[:32])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(
        json.dumps(
            {
                "rss_empty": rss_empty,
                "rss_runtime": rss_runtime,
                "rss_load": rss_load,
                "rss_warm": rss_warm,
                "rss_peak": peak,
                "first_answer_s": first_answer,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
