"""Torch-free model directories for service tests: a BERT-shaped ONNX graph made with onnx.helper
(token table → mask-weighted mean over the sequence → L2 normalisation, the model contract's inputs
and outputs), the tiny WordPiece tokenizer, a manifest, heads and a probe set.

`make_served` writes what a `compress` run leaves for the service: a baseline and a compressed
variant of it (the same table, slightly perturbed, so their vectors are close but not equal)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import contract
from common.fidelity import fidelity
from common.heads import Head
from common.machine import cpu_info
from common.manifest import Manifest, sha256_file
from common.probe_set import ProbeSet
from compression.evaluation.output_types import measure as measure_output_types
from tests.tiny import tiny_vocab, write_tokenizer

SENTIMENT = ["negative", "positive"]
QUESTION_TYPE = ["abbreviation", "description", "entity", "human", "location", "numeric"]
PROBE_TEXTS = [
    "the movie was good",
    "a dog runs in the city",
    "where is the river",
    "who is the man",
    "boring plot and awful actors",
    "great fun",
    "the film",
    "a cat",
] * 4


def tiny_table(vocab_size: int, dim: int, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """The token table; `noise` perturbs it relative to the seed's table (a "compressed" copy)."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab_size, dim)).astype(np.float32)
    if noise:
        table += noise * np.random.default_rng(seed + 1000).standard_normal(table.shape).astype(np.float32)
    return table


def make_graph(table: np.ndarray, pooled: bool = True, normalize: bool = True) -> onnx.ModelProto:
    """pooled: also give the mean before normalisation as the `pooled` output (what the pipeline exports);
    normalize=False: the embedding is that mean itself (a source without a Normalize module)."""
    dim = table.shape[1]
    pooled = pooled and normalize
    mean = contract.OUTPUT_POOLED if pooled else "mean" if normalize else contract.OUTPUT_EMBEDDING
    nodes = [
        helper.make_node("Gather", ["table", contract.INPUT_IDS], ["tokens"]),  # (b, s, dim)
        helper.make_node("Cast", [contract.ATTENTION_MASK], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),  # (b, s, 1)
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),  # (b, dim)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (b, 1)
        helper.make_node("Max", ["count", "one"], ["count1"]),  # an all-padding row divides by 1
        helper.make_node("Div", ["total", "count1"], [mean]),
    ]
    if normalize:
        nodes.append(helper.make_node("LpNormalization", [mean], [contract.OUTPUT_EMBEDDING], axis=1, p=2))
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
    ]
    outputs = [helper.make_tensor_value_info(contract.OUTPUT_EMBEDDING, TensorProto.FLOAT, ["batch", dim])]
    if pooled:
        outputs.append(helper.make_tensor_value_info(contract.OUTPUT_POOLED, TensorProto.FLOAT, ["batch", dim]))
    graph = helper.make_graph(
        nodes,
        "tiny-mean-pool",
        [
            helper.make_tensor_value_info(contract.INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(contract.ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"]),
        ],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", contract.OPSET)])


def encode(model_dir: Path, texts: list[str]) -> np.ndarray:
    """The directory's `embedding` output for texts, with onnxruntime and its tokenizer."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / contract.TOKENIZER_FILE))
    session = ort.InferenceSession(str(model_dir / contract.MODEL_FILE), providers=["CPUExecutionProvider"])
    out = []
    for text in texts:
        ids = np.asarray([tok.encode(text).ids], dtype=np.int64)
        out.append(
            session.run(
                [contract.OUTPUT_EMBEDDING], {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: np.ones_like(ids)}
            )[0][0]
        )
    return np.stack(out)


def make_model_dir(
    path: Path,
    name: str = "tiny",
    dim: int = 16,
    max_seq_length: int = 48,
    baseline: str | None = None,
    seed: int = 0,
    noise: float = 0.0,
    pooled: bool = True,
    normalize: bool = True,
    heads: bool = False,
    reference: np.ndarray | None = None,
    served_extras: bool = False,
) -> Path:
    """A complete model directory the service loads, built without torch. heads: a sentiment and a
    question-type head (random weights); reference: the baseline's embeddings of PROBE_TEXTS, written
    as the probe set (the baseline's own are used when it is the baseline)."""
    vocab = tiny_vocab()
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(make_graph(tiny_table(len(vocab), dim, seed, noise), pooled, normalize), path / contract.MODEL_FILE)
    write_tokenizer(path / contract.TOKENIZER_FILE, vocab)
    names = []
    if heads:
        rng = np.random.default_rng(seed + 7)
        for head_name, labels in (("sentiment", SENTIMENT), ("question-type", QUESTION_TYPE)):
            Head(
                head_name,
                labels,
                rng.standard_normal((len(labels), dim)).astype(np.float32),
                rng.standard_normal(len(labels)).astype(np.float32),
                {"accuracy": 50.0},
            ).save(path / contract.HEADS_DIR)
            names.append(head_name)
    quality = {"stsb_spearman": 10.0}
    own = encode(path, PROBE_TEXTS)
    ref = own if reference is None else reference
    ProbeSet(PROBE_TEXTS, ref).write(path)
    mean, p1 = fidelity(own, ref.astype(np.float16).astype(np.float32))
    probe = {"texts": len(PROBE_TEXTS), "fidelity_mean": round(mean, 5), "fidelity_p1": round(p1, 5)}
    if baseline is not None:
        quality |= {"fidelity_mean": round(mean, 5), "fidelity_p1": round(p1, 5)}
    size = (path / contract.MODEL_FILE).stat().st_size
    table_params = len(vocab) * dim
    Manifest.model_validate(
        {
            "name": name,
            "base_model": "onnx-helper",
            "baseline": baseline,
            "method": "none" if baseline is None else "pq",
            "rank": None,
            "quantization": "fp32",
            "dim": dim,
            "max_seq_length": max_seq_length,
            "params": {"embedding": table_params, "encoder": 0, "total": table_params},
            "bytes": {"file": size, "embedding": table_params * (4 if baseline is None else 1)},
            "sha256": sha256_file(path / contract.MODEL_FILE),
            "quality": quality,
            "recipe": {},
            "versions": {},
            "heads": names,
            "probe": probe,
            "machine": cpu_info(),
            "normalized": normalize,
            # served_extras: as if the build had measured half the vector as good enough (Matryoshka) and
            # calibrated the compact types on the probe texts (the build's own measure); without, it predates both
            "dimensions": {"supported": [dim // 2], "measured": {}, "rule": "tests/onnx_tiny.py"}
            if served_extras
            else {},
            "output_types": measure_output_types(SimpleNamespace(held_out=own, sts_u=None), None, own)
            if served_extras
            else {},
        }
    ).write(path)
    return path


def make_served(root: Path, dim: int = 64, noise: float = 0.05) -> Path:
    """`tiny` (baseline) and `tiny-fact` (its close copy, baseline tiny), both with heads and probe sets."""
    base = make_model_dir(root / "tiny", "tiny", dim=dim, heads=True, served_extras=True)
    reference = ProbeSet.read(base).reference
    make_model_dir(
        root / "tiny-fact",
        "tiny-fact",
        dim=dim,
        baseline="tiny",
        noise=noise,
        heads=True,
        reference=reference,
        served_extras=True,
    )
    return root
