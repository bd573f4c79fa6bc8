"""One contender of the peer comparison, measured in its own process and virtual environment:

    PYTHON bench/peers/runner.py --peer NAME --model DIR --work DIR --texts FILE --out FILE

It is run by the peer's own interpreter (its pins conflict with ours), so it imports only the
standard library, numpy and the peer's library — never this repository's
packages, except for the peer `ours`, which runs a model directory through the service's backend with
this repository's interpreter. Every contender is measured by the same code below: resident memory
after load and its embeddings of the texts (for STS-B and fidelity, computed by the parent). Then it
prints `ready` and waits: the parent, which holds every contender's worker at once, asks each in turn
for a throughput sample (`BATCH SECONDS` on stdin, one JSON line back), so the host's drift falls on
all of them alike; `quit` (or end of input) writes the resident memory after the runs and exits.
The protocol has stdout to itself: anything a library prints goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def int8_config() -> str:
    """sentence-transformers' quantization config for this CPU: avx512_vnni where the CPU has it, avx2
    where bench/cpuid hides AVX-512 from this process (its shim sets EMBED_CPUID_HIDDEN=1; this runner
    lives in the peers' environments, without the repository's packages)."""
    if os.environ.get("EMBED_CPUID_HIDDEN") == "1":
        return "avx2"
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").is_file() else ""
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def st_onnx_export(model: Path, work: Path) -> Path:
    """The model folder with sentence-transformers' own ONNX export in onnx/ (made once, then reused)."""
    folder = work / "st-onnx"
    if not (folder / "onnx" / "model.onnx").is_file():
        from sentence_transformers import SentenceTransformer

        shutil.rmtree(folder, ignore_errors=True)
        # loaded from the user's folder (exported in memory on the way), saved beside it with onnx/
        SentenceTransformer(str(model), backend="onnx", device="cpu").save_pretrained(str(folder))
    return folder


def load(peer: str, model: Path, work: Path, threads: int):
    """(encode(texts) -> (n, dim) float32, a description of how the peer was configured)."""
    if peer == "ours":
        from common.manifest import Manifest
        from common.onnx_encoder import SessionConfig
        from service.runtime import OnnxBackend

        # the service's own backend (its tokenizer calls, padding and output) with its in-process
        # defaults: idle threads spin after a run, as onnxruntime's own default sessions do, which the
        # other ONNX contenders use; the service's non-spinning sessions are measured over HTTP
        backend = OnnxBackend(model, Manifest.read(model).max_seq_length, SessionConfig(threads=threads))
        return (
            lambda texts: backend.run(backend.tokenize(texts, True)),
            f"service/runtime.OnnxBackend on {model.name}/model.onnx, {threads or 'all'} threads, spinning "
            "(in-process default)",
        )
    if peer in ("st-onnx-fp32", "st-onnx-int8"):
        from sentence_transformers import SentenceTransformer

        folder = st_onnx_export(model, work)
        kwargs, how = {}, "SentenceTransformer(backend='onnx'), its own export onnx/model.onnx"
        if peer == "st-onnx-int8":
            from sentence_transformers import export_dynamic_quantized_onnx_model

            config = int8_config()
            name = {"avx2": "model_quint8_avx2.onnx"}.get(config, f"model_qint8_{config}.onnx")
            if not (folder / "onnx" / name).is_file():
                export_dynamic_quantized_onnx_model(
                    SentenceTransformer(str(folder), backend="onnx", device="cpu"), config, str(folder)
                )
            kwargs = {"file_name": f"onnx/{name}"}
            how = f"export_dynamic_quantized_onnx_model(config='{config}') → onnx/{name}"
        st = SentenceTransformer(str(folder), backend="onnx", device="cpu", model_kwargs=kwargs)
        return (
            lambda texts: st.encode(
                texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True
            ).astype(np.float32),
            how,
        )
    if peer == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        folder = work / "st-onnx"  # the same ONNX file sentence-transformers exported
        if not (folder / "onnx" / "model.onnx").is_file():
            raise SystemExit("fastembed needs the ONNX export of st-onnx-fp32: run that peer first")
        name = "local/" + model.name
        how = "TextEmbedding.add_custom_model(mean pooling, normalised, onnx/model.onnx) + specific_model_path"
        tok_config = folder / "tokenizer_config.json"
        cfg = json.loads(tok_config.read_text()) if tok_config.is_file() else {}
        if not 0 < int(cfg.get("model_max_length") or 0) < 10**6:  # fastembed needs it, older folders lack it
            cfg["model_max_length"] = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
            tok_config.write_text(json.dumps(cfg))
            how += f"; model_max_length {cfg['model_max_length']} written to its tokenizer_config.json"
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=name),
            dim=int(json.loads((folder / "config.json").read_text())["hidden_size"]),
            model_file="onnx/model.onnx",
        )
        fe = TextEmbedding(model_name=name, specific_model_path=str(folder), threads=threads or None)
        return lambda texts: np.stack(list(fe.embed(texts, batch_size=len(texts)))).astype(np.float32), how
    if peer == "model2vec":
        from model2vec import StaticModel

        folder = work / "model2vec"
        if not (folder / "config.json").is_file():  # distilled in a process of its own: it runs torch,
            import subprocess  # which the static model does not need

            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from model2vec.distill import distill; "
                    "distill(model_name=sys.argv[1], pca_dims=256).save_pretrained(sys.argv[2])",
                    str(model),
                    str(folder),
                ],
                check=True,
            )
        static = StaticModel.from_pretrained(str(folder))
        return (
            lambda texts: static.encode(texts, batch_size=len(texts)).astype(np.float32),
            "model2vec.distill(pca_dims=256) of the same model, StaticModel.encode",
        )
    raise SystemExit(f"unknown peer {peer!r}")


def throughput(encode, texts: list[str], batch: int, seconds: float) -> dict:
    """Texts per second over `seconds` of back-to-back batches (after one warm batch), and the median
    batch latency."""
    encode(texts[:batch])
    done, times, i = 0, [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        chunk = [texts[(i + k) % len(texts)] for k in range(batch)]
        i += batch
        t0 = time.perf_counter()
        encode(chunk)
        times.append(time.perf_counter() - t0)
        done += batch
    return {
        "texts_per_s": round(done / sum(times), 1),
        "median_ms": round(float(np.median(times)) * 1000, 3),
        "batches": len(times),
    }


def serve(encode, texts: list[str], answers) -> None:
    """Answer the parent's sample requests until `quit`."""
    for line in sys.stdin:
        request = line.split()
        if not request or request[0] == "quit":
            return
        answers.write(json.dumps(throughput(encode, texts, int(request[0]), float(request[1]))) + "\n")
        answers.flush()


def main() -> None:
    answers = os.fdopen(os.dup(1), "w")  # the protocol's channel; fd 1 itself now goes to stderr
    os.dup2(2, 1)
    p = argparse.ArgumentParser()
    p.add_argument("--peer", required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--texts", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--threads", type=int, default=0, help="ours and fastembed: intra-op threads (0: every core, as the others run)"
    )
    a = p.parse_args()
    texts = json.loads(a.texts.read_text())
    a.work.mkdir(parents=True, exist_ok=True)
    rss_start = rss_bytes()
    t0 = time.perf_counter()
    encode, configured = load(a.peer, a.model, a.work, a.threads)
    load_s = time.perf_counter() - t0
    vectors = np.concatenate([encode(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    rss_loaded = rss_bytes()
    np.save(a.out.with_suffix(".npy"), vectors.astype(np.float32))
    answers.write("ready\n")
    answers.flush()
    serve(encode, texts, answers)
    a.out.write_text(
        json.dumps(
            {
                "peer": a.peer,
                "configured": configured,
                "load_s": round(load_s, 2),
                "dim": int(vectors.shape[1]),
                "rss_start": rss_start,
                "rss_after_use": rss_loaded,
                "rss_peak_after_runs": rss_bytes(),
                "python": platform.python_version(),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
