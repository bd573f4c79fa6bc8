"""What every source becomes once loaded (compression/sources/load.py, onnx_import.py): the encoder as a
BertModel and what export and evaluation need to know about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compression.sources.architectures import BERT, Family


@dataclass(frozen=True)
class SourceModel:
    """A loaded source encoder plus what export and evaluation need to know about it."""

    path: Path
    name: str
    bert: "object"  # transformers.BertModel (kept untyped so importing this module stays cheap)
    tokenizer_file: Path
    max_seq_length: int
    pooling: "object"  # compression.model.Pooling
    kind: str  # "sentence-transformers", "huggingface" or "onnx"
    family: Family = BERT  # the architecture it was mapped from onto a BertModel (sources/architectures.py)
    prompts: dict[str, str] | None = None  # sentence-transformers' named prompts ({"query": "query: ", …})
    default_prompt_name: str | None = None  # the prompt applied when a caller names none

    @property
    def vocab_size(self) -> int:
        return int(self.bert.config.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    def describe(self) -> dict:
        """What the manifest records about the source."""
        cfg = self.bert.config
        return {
            "path": str(self.path),
            "kind": self.kind,
            "pooling": self.pooling.mode,
            "normalize": self.pooling.normalize,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "layers": cfg.num_hidden_layers,
            "heads": cfg.num_attention_heads,
            "family": self.family.name,
        }
