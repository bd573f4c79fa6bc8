"""What the pipeline knows about each encoder family, as data (optimum's `BertOnnxConfig` is the model).

Every family is mapped onto one torch form, a transformers `BertModel`, at load time: the steps after
it (smoothing, factorization, recovery, export, quantization, the serving rewrites) then see one
layout of tensor names. The only differences the supported families have are here:

- BERT (`model_type` bert: MiniLM, bge, e5, gte, LaBSE, multilingual-e5-small/base): positions count
  from 0, up to two token types.
- XLM-RoBERTa / RoBERTa (bge-m3's dense output, multilingual-e5-large, …): the same encoder, but the
  position of token t is `padding_idx + 1 + t` (ids from the input's non-padding tokens), so the first
  `padding_idx + 1` rows of the position table are never read for a right-padded batch; one token type.
  Dropping those rows gives a BertModel whose positions count from 0 and whose output is identical for
  every right-padded (or unpadded) batch, which is all the pipeline and the service ever run.

Special-token ids (XLM-R's pad is 1, BERT's 0) come from the tokenizer (`special_ids`), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression.errors import ModelLayoutError


@dataclass(frozen=True)
class TorchForm:
    """The tensor names of the one torch form every family is mapped onto (a transformers BertModel),
    which the ONNX import, smoothing, the quantizer and the measures read: no step spells them itself."""

    word_embeddings: str = "word_embeddings"  # the table (its Gather nodes carry the name in the export)
    position_embeddings: str = "position_embeddings"
    token_type_embeddings: str = "token_type_embeddings"
    # each layer's linears and LayerNorms, relative to encoder.layer.N
    linears: tuple[str, ...] = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
    layer_norms: tuple[str, ...] = ("attention.output.LayerNorm", "output.LayerNorm")
    value: str = "attention.self.value"
    attention_output: str = "attention.output.dense"  # reads softmax(QKᵀ)·V
    state_roots: tuple[str, ...] = ("embeddings", "encoder", "pooler")  # top-level state-dict keys


FORM = TorchForm()


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json's model_type values of this family
    model_class: str  # the transformers class its checkpoints load into
    position_offset_key: str | None  # config key whose value + 1 is the first position row read; None: 0
    examples: str

    def position_offset(self, config: dict[str, Any]) -> int:
        """Rows of the position table before the one position 0 reads."""
        if self.position_offset_key is None:
            return 0
        return int(config.get(self.position_offset_key, 1)) + 1


BERT = Family(
    "bert",
    ("bert",),
    "BertModel",
    None,
    "MiniLM, bge, e5, gte, LaBSE, multilingual-e5-small/base, any BertModel checkpoint",
)
XLM_ROBERTA = Family(
    "xlm-roberta",
    ("xlm-roberta", "roberta"),
    "XLMRobertaModel",
    "pad_token_id",
    "bge-m3, multilingual-e5-large, paraphrase-xlm-r, RoBERTa checkpoints",
)
FAMILIES = (BERT, XLM_ROBERTA)


def supported() -> str:
    """The families in one phrase, for refusals."""
    return "; ".join(f"{f.name} (model_type {', '.join(f.model_types)}: {f.examples})" for f in FAMILIES)


def family_of(model_type: str | None) -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ModelLayoutError(f"model_type {model_type!r} is not supported; supported: {supported()}")


def as_bert(model, family: Family, config: dict[str, Any]):
    """The family's torch model as an equivalent BertModel (the same object for BERT itself)."""
    if family is BERT:
        return model
    from transformers import BertConfig, BertModel

    cfg = model.config
    offset = family.position_offset(config)
    positions = model.embeddings.position_embeddings.weight.shape[0] - offset
    if positions <= 0:
        raise ModelLayoutError(
            f"{family.name}: a position table of {positions + offset} rows leaves none after the offset {offset}"
        )
    bert_cfg = BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act=cfg.hidden_act,
        max_position_embeddings=positions,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=cfg.pad_token_id,
        attn_implementation="eager",
    )
    pooler = getattr(model, "pooler", None) is not None
    bert = BertModel(bert_cfg, add_pooling_layer=pooler)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))}
    key = "embeddings.position_embeddings.weight"
    state[key] = state[key][offset:].clone()  # row t is now position t
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelLayoutError(f"{family.name}: tensors {sorted(missing + unexpected)[:3]} do not map onto a BertModel")
    return bert.eval()


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int | None


UNK_TOKENS = ("[UNK]", "<unk>")


def special_ids(tokenizer_file: Path) -> SpecialIds:
    """The pad and unknown ids a tokenizer.json uses (common.onnx_encoder.pad_token for the pad)."""
    from tokenizers import Tokenizer

    from common.onnx_encoder import pad_token

    tok = Tokenizer.from_file(str(tokenizer_file))
    unk = next((tok.token_to_id(t) for t in UNK_TOKENS if tok.token_to_id(t) is not None), None)
    return SpecialIds(pad=pad_token(tok)[0], unk=unk)
