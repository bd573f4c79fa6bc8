"""Step 1 for an ONNX export: rebuild the torch BertModel from the graph's initializers.

Exports (torch.onnx, optimum, sentence-transformers' ONNX backend) keep most weights under their
state-dict names — `embeddings.word_embeddings.weight`, `encoder.layer.3.attention.self.query.bias`
— but a Linear's weight usually becomes an anonymous MatMul operand (`onnx::MatMul_1234`, stored
transposed, in × out). Those are placed by the named bias their MatMul's output is added to. The
shape of the model (layers, hidden size, intermediate size, vocabulary, positions, token types)
follows from the placed weights; the number of attention heads is not a weight, so the candidates
the graph's constants suggest are tried until the rebuilt model reproduces the graph. The graph's
output is either the token states (pooled as the source says, mean by default) or an already pooled
sentence embedding, whose pooling is found the same way: by reproducing it.

Nothing is trusted until checked: the rebuilt model must match the given graph on several batch
shapes (cosine ≥ 0.9999) before anything else runs.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.fidelity import cosines
from compression.errors import ModelLayoutError
from compression.onnx_graph import GraphIndex
from compression.sources.architectures import FORM
from compression.sources.source_model import SourceModel
from compression.sources.st_config import st_modules, st_pooling, st_prompts

log = logging.getLogger(__name__)

MIN_COSINE = 0.9999
# (batch, seq) shapes the rebuilt model is checked on, as the export's parity check does.
CHECK_SHAPES = ((1, 5), (3, 12), (4, 31))
# Ops of graphs that onnxruntime already fused or quantized: their weights are no longer a BERT's.
FUSED_OPS = {
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "FastGelu",
    "BiasGelu",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeLinear",
    "DequantizeLinear",
    "QuantizeLinear",
    "MatMulNBits",
    "QAttention",
    "QEmbedLayerNormalization",
}
LINEARS = FORM.linears
LAYER_NORMS = FORM.layer_norms
_KEY = re.compile(r"(?:^|[./])((?:" + "|".join(FORM.state_roots) + r")\..+)$")


@dataclass(frozen=True)
class GraphOutput:
    name: str
    pooled: bool  # (batch, dim) sentence embedding; else (batch, seq, dim) token states


def state_key(name: str) -> str | None:
    """The BertModel state-dict key in an initializer's name ('bert.encoder.layer.0…' → 'encoder.layer.0…')."""
    m = _KEY.search(name)
    return m.group(1) if m else None


class GraphWeights:
    """Initializers and Constant-node tensors of a graph, and who consumes each."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.tensors = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.tensors[node.output[0]] = numpy_helper.to_array(attr.t)
        # torch's exporter stores equal tensors once and names the others through Identity nodes.
        for node in self.graph.node:
            if node.op_type == "Identity" and node.input[0] in self.tensors:
                self.tensors[node.output[0]] = self.tensors[node.input[0]]
        self.consumers = GraphIndex(model).consumers

    def linear_weight_oi(self, name: str) -> np.ndarray:
        """A named Linear weight as torch stores it (out × in), whichever way the graph consumes it."""
        w = self.tensors[name]
        for node in self.consumers.get(name, []):
            if node.op_type == "MatMul" and node.input[1] == name:
                return w.T  # MatMul(x, W) takes W as in × out
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                return w if trans_b else w.T
        return w  # fed through a Transpose (or unused): stored as torch keeps it

    def place(self) -> dict[str, np.ndarray]:
        """state-dict key → array, for every weight the graph names or whose MatMul feeds a named bias."""
        placed: dict[str, np.ndarray] = {}
        for name in self.tensors:
            key = state_key(name)
            if key is None or not self.tensors[name].dtype.kind == "f":
                continue
            is_linear_weight = key.endswith(".weight") and any(
                key.endswith(f"{linear}.weight") for linear in LINEARS + ("pooler.dense",)
            )
            placed[key] = self.linear_weight_oi(name) if is_linear_weight else self.tensors[name]
        for node in self.graph.node:
            if node.op_type != "MatMul" or node.input[1] not in self.tensors or state_key(node.input[1]):
                continue
            bias_key = self._bias_after(node.output[0])
            if bias_key is None:
                raise ModelLayoutError(
                    f"MatMul node {node.name or node.output[0]!r}: its weight "
                    f"{node.input[1]!r} feeds no named bias, so it cannot be placed"
                )
            placed[bias_key[: -len("bias")] + "weight"] = self.tensors[node.input[1]].T
        return placed

    def _bias_after(self, output: str) -> str | None:
        for node in self.consumers.get(output, []):
            if node.op_type == "Add":
                for other in node.input:
                    key = state_key(other) if other in self.tensors else None
                    if key and key.endswith(".bias"):
                        return key
        return None

    def head_counts(self, hidden: int) -> list[int]:
        """Head counts the graph's constants point to, the likeliest first: the attention scale
        1/√d (or √d), then the integer constants that could be the head size d in the reshape
        (…, -1, d) or the count itself; then the common shapes."""
        scalars = [
            float(v.reshape(-1)[0])
            for v in self.tensors.values()
            if v.dtype.kind == "f" and v.size == 1 and np.isfinite(v).all()
        ]  # not a mask's -inf
        ints = sorted(
            {int(x) for v in self.tensors.values() if v.dtype.kind in "iu" and v.size <= 4 for x in v.reshape(-1)},
            reverse=True,
        )
        dims = []
        for c in scalars:
            for x in (c * c, 1 / (c * c) if c else 0.0):
                if 1 <= x < 1e9 and abs(x - round(x)) < 1e-3 * x:
                    dims.append(round(x))
        dims += ints
        counts = [hidden // d for d in dims if 1 < d < hidden and hidden % d == 0]
        counts += [h for h in ints if 1 < h < hidden and hidden % h == 0]
        counts += [h for h in (hidden // 64, hidden // 32, 12, 16, 8, 4, 2, 1) if h > 0 and hidden % h == 0]
        return list(dict.fromkeys(counts))

    def layer_norm_eps(self) -> float:
        for node in self.graph.node:
            if node.op_type == "LayerNormalization":
                return float(next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5))
        for node in self.graph.node:  # decomposed: Sqrt(Add(variance, eps))
            if node.op_type == "Sqrt":
                for add in self.graph.node:
                    if add.op_type == "Add" and add.output[0] == node.input[0]:
                        for name in add.input:
                            if name in self.tensors and self.tensors[name].size == 1:
                                return float(self.tensors[name].reshape(-1)[0])
        return 1e-12

    def hidden_act(self) -> str:
        ops = {n.op_type for n in self.graph.node}
        if "Erf" in ops or "Gelu" in ops:
            return "gelu"
        if "Tanh" in ops and "Pow" in ops:
            return "gelu_new"
        return "relu" if "Relu" in ops else "gelu"


def _refuse_fused(graph) -> None:
    for node in graph.node:
        if node.op_type in FUSED_OPS:
            raise ModelLayoutError(
                f"node {node.name or node.output[0]!r} (op {node.op_type}) belongs to an optimized or "
                "quantized graph; pass the plain fp32 export"
            )


FLOAT_TYPES = {1, 10, 11, 16}  # onnx TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _outputs(model, hidden: int) -> list[GraphOutput]:
    """The outputs that could be the encoder's, in the order to try them: float sentence embeddings
    (batch, H) first, then float token states (batch, seq, H). Integer echoes of the inputs (a
    sentence-transformers features dict exports input_ids and attention_mask too) and a BERT pooler's
    tanh output are not candidates."""
    pooled, states = [], []
    for out in model.graph.output:
        tensor = out.type.tensor_type
        dims = tensor.shape.dim
        last = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
        if tensor.elem_type not in FLOAT_TYPES or (last is not None and last != hidden):
            continue
        if len(dims) == 2 and out.name != "pooler_output":
            pooled.append(GraphOutput(out.name, True))
        elif len(dims) == 3:
            states.append(GraphOutput(out.name, False))
    if not pooled + states:
        described = ", ".join(f"{o.name} ({_type_name(o)})" for o in model.graph.output)
        raise ModelLayoutError(
            f"none of the graph's outputs [{described}] is a float sentence embedding (batch, {hidden}) "
            f"or float token states (batch, seq, {hidden})"
        )
    return pooled + states


def _type_name(out) -> str:
    from onnx import TensorProto

    tensor = out.type.tensor_type
    dims = [str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?" for d in tensor.shape.dim]
    return f"{TensorProto.DataType.Name(tensor.elem_type).lower()} [{', '.join(dims)}]"


def _position_offsets(graph, tokenizer_file: Path) -> list[int]:
    """Position-table offsets to try: an XLM-R/RoBERTa export counts positions from its input ids
    (a CumSum over `ids != pad`), starting at pad + 1 (sources/architectures.py); a BERT's from 0."""
    from compression.sources.architectures import special_ids

    if any(node.op_type == "CumSum" for node in graph.node):
        return [special_ids(tokenizer_file).pad + 1, 0]
    return [0]


def _config(placed: dict[str, np.ndarray], heads: int, eps: float, act: str):
    from transformers import BertConfig

    need = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "encoder.layer.0.intermediate.dense.weight",
    ]
    for key in need:
        if key not in placed:
            raise ModelLayoutError(f"the graph has no tensor for {key}: not a BERT encoder export this tool can map")
    V, H = placed["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in placed if k.startswith("encoder.layer."))
    return BertConfig(
        vocab_size=int(V),
        hidden_size=int(H),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=int(placed["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(placed["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(placed["embeddings.token_type_embeddings.weight"].shape[0]),
        layer_norm_eps=eps,
        hidden_act=act,
        attn_implementation="eager",
    )


def _build(config, pooler: bool, placed: dict[str, np.ndarray]):
    import torch
    from transformers import BertModel

    bert = BertModel(config, add_pooling_layer=pooler)
    expected = bert.state_dict()
    missing = [k for k in expected if k not in placed and not k.endswith(("position_ids", "token_type_ids"))]
    if missing:
        raise ModelLayoutError(f"the graph has no tensor for {missing[0]}: not a BERT encoder export this tool can map")
    state = {}
    for key, value in placed.items():
        if key not in expected:
            if key.startswith("pooler.") and not pooler:
                continue
            raise ModelLayoutError(f"tensor for {key} does not fit a BertModel with {config.num_hidden_layers} layers")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelLayoutError(
                f"tensor for {key} has shape {tuple(value.shape)}, a BertModel of this size "
                f"needs {tuple(expected[key].shape)}"
            )
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    bert.load_state_dict(state, strict=False)
    bert.eval()
    return bert


def _feeds(session, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    feeds = {}
    for inp in session.get_inputs():
        dtype = np.int32 if "int32" in inp.type else np.int64
        if inp.name == "input_ids":
            feeds[inp.name] = ids.astype(dtype)
        elif inp.name == "attention_mask":
            feeds[inp.name] = mask.astype(dtype)
        elif inp.name == "token_type_ids":
            feeds[inp.name] = np.zeros_like(ids, dtype=dtype)
        else:
            raise ModelLayoutError(f"graph input {inp.name!r} is not one of input_ids, attention_mask, token_type_ids")
    return feeds


def _match(bert, session, output: GraphOutput, vocab: int, pooling_mode: str | None, low: int):
    """(worst cosine, Pooling) of the rebuilt model against the graph on CHECK_SHAPES (ids from low up:
    no special token, so an XLM-R graph's positions are the running count the rebuilt model assumes)."""
    import torch

    from compression.model import POOLING_MODES, Pooling, hidden_states, pool, random_batch

    rng = np.random.default_rng(0)
    modes = [pooling_mode] if pooling_mode else (list(POOLING_MODES) if output.pooled else ["mean"])
    worst = {m: 1.0 for m in modes}
    norms = []
    for batch, seq in CHECK_SHAPES:
        ids, mask = random_batch(batch, seq, vocab, rng, low=low)
        ref = session.run([output.name], _feeds(session, ids, mask))[0]
        with torch.no_grad():
            states = hidden_states(bert, torch.from_numpy(ids), torch.from_numpy(mask))
        if not output.pooled:
            real = mask.astype(bool)
            worst = {m: min(worst[m], float(cosines(states.numpy()[real], ref[real]).min())) for m in modes}
            continue
        norms.append(np.linalg.norm(ref, axis=-1))
        for m in modes:
            got = pool(states, torch.from_numpy(mask), Pooling(m, normalize=False)).numpy()
            worst[m] = min(worst[m], float(cosines(got, ref).min()))
    best = max(worst, key=worst.get)
    normalize = bool(np.allclose(np.concatenate(norms), 1.0, atol=1e-3)) if output.pooled else True
    return worst[best], Pooling(best, normalize)


def _tokenizer_beside(graph_file: Path, tokenizer: Path | None) -> Path:
    if tokenizer is not None:
        if not Path(tokenizer).is_file():
            raise ModelLayoutError(f"tokenizer file not found: {tokenizer}")
        return Path(tokenizer)
    for folder in (graph_file.parent, graph_file.parent.parent):
        if (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
    raise ModelLayoutError(f"no tokenizer.json beside {graph_file}; pass --tokenizer FILE")


def _root_settings(graph_file: Path) -> tuple[int | None, object | None]:
    """The max sequence length and the Pooling that the files around the graph state, if any: a
    sentence-transformers folder's sentence_bert_config.json and modules, else tokenizer_config.json's
    model_max_length, else the tokenizer.json's own truncation."""
    length, pooling = None, None
    for folder in (graph_file.parent, graph_file.parent.parent):
        modules = st_modules(folder)
        if pooling is None and modules is not None:
            pooling = st_pooling(folder, modules)
        for name, key in (
            ("sentence_bert_config.json", "max_seq_length"),
            ("tokenizer_config.json", "model_max_length"),
        ):
            if length is None and (folder / name).is_file():
                value = json.loads((folder / name).read_text()).get(key)
                length = int(value) if isinstance(value, int) and value < 100_000 else None
    return length, pooling


def load_onnx_source(graph_file: Path, *, name: str, tokenizer: Path | None = None, pooling: str | None = None):
    """A SourceModel rebuilt from an ONNX export, checked against it; ModelLayoutError when it cannot be."""
    import onnx
    import onnxruntime as ort

    from compression.model import Pooling
    from compression.sources.architectures import BERT, XLM_ROBERTA

    try:
        model = onnx.load(str(graph_file))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError…
        raise ModelLayoutError(f"{graph_file} is not a readable ONNX graph: {str(exc).splitlines()[0][:160]}") from exc
    tokenizer_file = _tokenizer_beside(graph_file, tokenizer)
    _refuse_fused(model.graph)
    if "input_ids" not in {i.name for i in model.graph.input}:
        raise ModelLayoutError(f"{graph_file}: the graph has no input_ids input")
    weights = GraphWeights(model)
    placed = weights.place()
    if "embeddings.word_embeddings.weight" not in placed:
        raise ModelLayoutError(
            f"{graph_file}: the graph has no tensor for embeddings.word_embeddings.weight: "
            "not a BERT-family encoder export this tool can map"
        )
    hidden = int(placed["embeddings.word_embeddings.weight"].shape[1])
    outputs = _outputs(model, hidden)
    offsets = _position_offsets(model.graph, tokenizer_file)
    stated_length, st_pool = _root_settings(graph_file)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    del model
    candidates = weights.head_counts(hidden)
    pooler = "pooler.dense.weight" in placed
    positions = placed.get("embeddings.position_embeddings.weight")
    low = min(max(offsets) + 3, int(placed["embeddings.word_embeddings.weight"].shape[0]) - 1)
    best = (-1.0, None, None, outputs[0], 0)
    for output in outputs:
        mode = pooling if pooling is not None or output.pooled or st_pool is None else st_pool.mode
        for offset in offsets:
            if positions is not None:
                placed["embeddings.position_embeddings.weight"] = positions[offset:]
            for heads in candidates:
                config = _config(placed, heads, weights.layer_norm_eps(), weights.hidden_act())
                bert = _build(config, pooler, placed)
                worst, chosen = _match(bert, session, output, config.vocab_size, mode, low)
                log.info(
                    "onnx import: output %s, %d heads, position offset %d → worst cosine %.6f (%s pooling)",
                    output.name,
                    heads,
                    offset,
                    worst,
                    chosen.mode,
                )
                if worst > best[0]:
                    best = (worst, bert, chosen, output, offset)
                if worst >= MIN_COSINE:
                    break
            if best[0] >= MIN_COSINE:
                break
        if best[0] >= MIN_COSINE:
            break
    worst, bert, chosen, output, offset = best
    if bert is None or worst < MIN_COSINE:
        raise ModelLayoutError(
            f"{graph_file}: the encoder rebuilt from its weights does not reproduce its output "
            f"{output.name!r} (best cosine {worst:.6f} < {MIN_COSINE})"
        )
    if not output.pooled:
        chosen = Pooling(chosen.mode, st_pool.normalize if st_pool is not None else True)
    truncation = json.loads(tokenizer_file.read_text()).get("truncation") or {}
    max_len = int(stated_length or truncation.get("max_length") or min(512, bert.config.max_position_embeddings))
    log.info(
        "onnx import: %s rebuilt (%d layers, hidden %d, %d heads, %s pooling%s), cosine %.6f to the graph",
        graph_file.name,
        bert.config.num_hidden_layers,
        bert.config.hidden_size,
        bert.config.num_attention_heads,
        chosen.mode,
        ", normalised" if chosen.normalize else "",
        worst,
    )
    family = XLM_ROBERTA if offset else BERT
    prompts, default_prompt = _root_prompts(graph_file)
    return SourceModel(
        path=graph_file,
        name=name,
        bert=bert,
        tokenizer_file=tokenizer_file,
        max_seq_length=min(max_len, bert.config.max_position_embeddings),
        pooling=chosen,
        kind="onnx",
        family=family,
        prompts=prompts,
        default_prompt_name=default_prompt,
    )


def _root_prompts(graph_file: Path) -> tuple[dict[str, str] | None, str | None]:
    """The prompts of the sentence-transformers folder around the graph, if any."""
    for folder in (graph_file.parent, graph_file.parent.parent):
        prompts, default = st_prompts(folder)
        if prompts:
            return prompts, default
    return None, None
