"""Builders for a tiny random BERT in sentence-transformers layout, and a tiny data dir."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the a an movie film good bad great awful plot actor actors story fun boring is was very not "
    "what who where when how why man woman dog cat plays playing runs city river country year "
    "number name love hate best worst funny sad long short new old music song game team"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocab(size: int = 160) -> list[str]:
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789?.,!'")
    subword = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = SPECIAL + letters + subword + WORDS
    vocab += [f"tok{i}" for i in range(size - len(vocab))]  # pad V (160 by default: > hidden 64)
    return vocab


def write_tokenizer(path: Path, vocab: list[str], lowercase: bool = True) -> None:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))]
    )
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))


def make_tiny_model(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    vocab = tiny_vocab()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    write_tokenizer(path / "tokenizer.json", vocab)
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48}))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return path


def random_id_rows(vocab: int, n: int, seed: int = 0) -> list[list[int]]:
    """n rows of 3–19 random non-special token ids: calibration sentences for a tiny model."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(len(SPECIAL), vocab, size=rng.integers(3, 20)).tolist() for _ in range(n)]


def _sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 9)))


def make_tiny_data(path: Path, seed: int = 0) -> Path:
    """STS-B, SST-2 and TREC files in the shared layout, with sentences the tiny vocab covers."""
    rng = random.Random(seed)
    (path / "stsbenchmark").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 120), ("dev", 30), ("test", 60)):
        rows = [
            f"main\tx\t2012\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{_sentence(rng)}\t{_sentence(rng)}" for i in range(n)
        ]
        (path / "stsbenchmark" / f"sts-{split}.csv").write_text("\n".join(rows) + "\n")
    (path / "sst2").mkdir(exist_ok=True)
    for split, n in (("train", 200), ("dev", 30), ("test", 60)):
        rows = []
        for _ in range(n):
            label = rng.randint(0, 1)
            cue = rng.choice(["good great fun best", "bad awful boring worst"][1 - label].split())
            rows.append(f"{_sentence(rng, 4)} {cue} {_sentence(rng, 2)}\t{label}")
        (path / "sst2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (path / "trec").mkdir(exist_ok=True)
    tags = ["HUM:ind who", "LOC:city where", "NUM:date when", "DESC:manner how", "ENTY:animal what", "ABBR:exp what"]
    for name, n in (("train_5500.label", 120), ("TREC_10.label", 40)):
        lines = []
        for _ in range(n):
            tag, word = rng.choice(tags).split()
            lines.append(f"{tag} {word} {_sentence(rng, 4)} ?")
        (path / "trec" / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def export_hf_onnx(bert, path: Path, token_type_ids: bool = True, pooler_output: bool = True) -> Path:
    """An ONNX export of a BertModel as optimum / transformers.js-style repositories ship it: inputs
    input_ids, attention_mask (and token_type_ids), outputs last_hidden_state (and pooler_output)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, *token_types):
            tt = token_types[0] if token_types else torch.zeros_like(input_ids)
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=tt)
            return (out.last_hidden_state, out.pooler_output) if pooler_output else out.last_hidden_state

    ids = torch.randint(1, 100, (2, 8))
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_type_ids else [])
    outputs = ["last_hidden_state"] + (["pooler_output"] if pooler_output else [])
    axes = {n: {0: "batch", 1: "sequence"} for n in inputs + ["last_hidden_state"]}
    args = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if token_type_ids else ())
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapped().eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return path


def make_st_folder(
    path: Path,
    pooling: str = "mean",
    normalize: bool = True,
    lower_case: bool = False,
    max_seq_length: int = 40,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    vocab_size: int = 160,
) -> Path:
    """A sentence-transformers folder saved by sentence-transformers itself around a tiny random BERT."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    vocab = tiny_vocab(vocab_size)
    bert_dir = path.parent / f".{path.name}-bert"
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(bert_dir))
    # A cased tokenizer, so that do_lower_case (lowercasing before it) changes the tokens.
    write_tokenizer(bert_dir / "tokenizer.json", vocab, lowercase=not lower_case)
    modules = [
        models.Transformer(str(bert_dir), max_seq_length=max_seq_length, do_lower_case=lower_case),
        models.Pooling(hidden, pooling_mode={"mean_sqrt_len": "mean_sqrt_len_tokens"}.get(pooling, pooling)),
    ]
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(path))
    return path


UNIGRAM_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's ids: pad is 1, not 0


def write_unigram_tokenizer(path: Path, vocab_size: int = 160, seed: int = 0) -> int:
    """A SentencePiece-style Unigram tokenizer.json trained on the tiny words (XLM-R's special tokens and
    template); the number of pieces it has."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    rng = random.Random(seed)
    texts = [_sentence(rng) for _ in range(400)] + [" ".join(WORDS)]
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=UNIGRAM_SPECIAL,
        unk_token="<unk>",
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    return tok.get_vocab_size()


def make_tiny_family(
    path: Path,
    family: str = "xlm-roberta",
    seed: int = 0,
    prompts: dict | None = None,
    layout: str = "sentence-transformers",
) -> Path:
    """A tiny random encoder of a family ('xlm-roberta', or 'bert' with a Unigram tokenizer) as a
    sentence-transformers folder (with prompts, if given) or a plain Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    work = path.parent / f".{path.name}-hf" if layout == "sentence-transformers" else path
    work.mkdir(parents=True, exist_ok=True)
    vocab = write_unigram_tokenizer(work / "tokenizer.json")
    shape = dict(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    if family == "xlm-roberta":
        model = XLMRobertaModel(
            XLMRobertaConfig(
                **shape, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2
            )
        )
    else:
        model = BertModel(BertConfig(**shape, max_position_embeddings=64, pad_token_id=1))
    model.save_pretrained(str(work))
    # As multilingual-e5 ships it: the SentencePiece tokenizer's class, whatever the encoder's family.
    (work / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "XLMRobertaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "cls_token": "<s>",
                "sep_token": "</s>",
                "mask_token": "<unk>",
                "model_max_length": 512,
            }
        )
    )
    if layout != "sentence-transformers":
        return path
    from sentence_transformers import SentenceTransformer, models

    modules = [
        models.Transformer(str(work), max_seq_length=40),
        models.Pooling(64, pooling_mode="mean"),
        models.Normalize(),
    ]
    st = SentenceTransformer(
        modules=modules, device="cpu", prompts=prompts, default_prompt_name=next(iter(prompts)) if prompts else None
    )
    st.save(str(path))
    return path
