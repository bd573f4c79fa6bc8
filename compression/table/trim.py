"""Vocabulary trimming (`--trim-vocab`, opt-in): keep the rows a user's texts can reach.

A multilingual table is mostly rows one user's languages never read (250k pieces, 82% of
multilingual-e5-small's weights). Trimming keeps
- every piece the tokenizer produces on the corpus,
- every single-character piece (with or without its word-start or continuation mark) of the scripts
  the corpus uses, so a text in those scripts with a word the corpus lacks is re-segmented into
  smaller pieces instead of becoming `<unk>`,
- every special and added token,
and writes a tokenizer.json whose ids are renumbered to the kept rows (the table is gathered to the
same order: new id i is old id `kept[i]`). Texts of the corpus tokenize to the same pieces as before;
texts in other scripts lose their pieces (measured per language with --eval).

Unigram (SentencePiece, XLM-R) and WordPiece (BERT) tokenizers are trimmed; BPE's merges refer to
pieces by text and cannot lose one safely, so a BPE tokenizer is refused.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compression.errors import ConfigError

log = logging.getLogger(__name__)

WORD_MARKS = ("▁", "##")  # SentencePiece's word start, WordPiece's continuation


def script_of(char: str) -> str:
    """A character's script, as the first word of its Unicode name (LATIN, CYRILLIC, CJK, HIRAGANA…)."""
    try:
        return unicodedata.name(char).split()[0]
    except ValueError:  # unnamed (controls)
        return "OTHER"


def _bare(piece: str) -> str:
    for mark in WORD_MARKS:
        if piece.startswith(mark) and len(piece) > len(mark):
            return piece[len(mark) :]
    return piece


@dataclass(frozen=True)
class Trimmed:
    kept: np.ndarray  # old ids of the kept rows, in new-id order (int64)
    tokenizer_file: Path
    scripts: list[str]
    from_corpus: int  # pieces the corpus produced
    characters: int  # single-character pieces added for its scripts

    def describe(self, vocab: int) -> dict:
        return {
            "trimmed": True,
            "kept": int(len(self.kept)),
            "of": int(vocab),
            "from_corpus": self.from_corpus,
            "script_characters": self.characters,
            "scripts": self.scripts,
        }


def trim_tokenizer(tokenizer_file: Path, texts: list[str], out_file: Path, vocab_rows: int) -> Trimmed:
    """Write the trimmed tokenizer.json to out_file; which rows of a vocab_rows table it keeps."""
    from tokenizers import Tokenizer

    spec = json.loads(Path(tokenizer_file).read_text())
    kind = spec["model"]["type"]
    if kind not in ("Unigram", "WordPiece"):
        raise ConfigError(f"--trim-vocab: a {kind} tokenizer cannot be trimmed (Unigram and WordPiece can)")
    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    used = set()
    for enc in tok.encode_batch(texts):
        used.update(enc.ids)
    from_corpus = len(used)
    scripts = sorted({script_of(c) for c in set().union(*map(set, texts)) if not c.isspace()})
    wanted = set(scripts)
    pieces = tok.get_vocab()  # piece → id
    characters = 0
    for piece, i in pieces.items():
        bare = _bare(piece)
        if i not in used and len(bare) == 1 and script_of(bare) in wanted:
            used.add(i)
            characters += 1
    used.update(a["id"] for a in spec.get("added_tokens", []))
    kept = np.asarray(sorted(i for i in used if i < vocab_rows), dtype=np.int64)
    new_id = {int(old): new for new, old in enumerate(kept)}
    _rewrite(spec, new_id)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(spec, ensure_ascii=False))
    Tokenizer.from_file(str(out_file))  # it must load
    log.info(
        "vocabulary trimmed: %d of %d rows kept (%d pieces of the corpus, %d characters of its %d scripts)",
        len(kept),
        vocab_rows,
        from_corpus,
        characters,
        len(scripts),
    )
    return Trimmed(kept, out_file, scripts, from_corpus, characters)


def _rewrite(spec: dict, new_id: dict[int, int]) -> None:
    """Renumber a tokenizer.json's model vocabulary, added tokens, template and padding to new_id."""
    model = spec["model"]
    if model["type"] == "Unigram":
        vocab = model["vocab"]
        model["vocab"] = [vocab[old] for old in sorted(new_id)]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:  # WordPiece: piece → id
        model["vocab"] = {p: new_id[i] for p, i in model["vocab"].items() if i in new_id}
    for added in spec.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    post = spec.get("post_processor") or {}
    for proc in post.get("processors", [post]):
        for special in (proc.get("special_tokens") or {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(proc.get(key), list):
                proc[key][1] = new_id[proc[key][1]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id.get(spec["padding"]["pad_id"], 0)


def trim_model(bert, kept: np.ndarray) -> None:
    """Gather the word-embedding table's rows to the kept ids, in place (vocab_size follows)."""
    import torch

    table = bert.embeddings.word_embeddings
    rows = table.weight.data[torch.from_numpy(kept)].clone()
    new = torch.nn.Embedding(rows.shape[0], rows.shape[1], padding_idx=None)
    new.weight.data.copy_(rows)
    bert.embeddings.word_embeddings = new
    bert.config.vocab_size = int(rows.shape[0])


def trim_source(ctx) -> dict:
    """--trim-vocab: from here on the build's source is its trimmed copy (table rows and tokenizer.json cut
    to what the corpus reaches); the baseline keeps the full vocabulary, so the teacher reads trimmed ids
    through the map back to the full ones. Returns what the manifest records. `ctx`: the BuildContext."""
    import copy
    import dataclasses

    src = ctx.source
    out = ctx.cache_dir / f"tokenizer-{src.name}-trimmed.json"
    trimmed = trim_tokenizer(src.tokenizer_file, ctx.corpus.train, out, src.vocab_size)
    bert = copy.deepcopy(src.bert)
    trim_model(bert, trimmed.kept)
    ctx.full_vocab = src.vocab_size
    ctx.__dict__["source"] = dataclasses.replace(src, bert=bert, tokenizer_file=trimmed.tokenizer_file)
    ctx.id_map = trimmed.kept
    ctx.vocabulary = trimmed.describe(src.vocab_size)
    return ctx.vocabulary
