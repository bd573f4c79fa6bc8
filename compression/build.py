"""Build one variant end to end into models/<name>/, atomically.

load → (smooth) → factorize → recover → export + parity → quantize → evaluate → manifest.
Everything is written into a hidden temporary directory beside the target and
renamed into place only when complete, so an interrupted or failed build
leaves no half-written model behind.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from common import contract
from common.manifest import Bytes, Manifest, Params, Quality, sha256_file
from common.onnx_encoder import OnnxEncoder, load_tokenizer

from . import quantize
from .corpus import read_text_file, token_counts, train_sentences
from .errors import ConfigError, PipelineError
from .evaluate import Embedded, EvalSet, embed_eval_set, quality
from .export import check_parity, export_onnx
from .smooth import smooth_encoder
from .factorize import factorize
from .sensitivity import metric_root
from .measure import embedding_bytes
from .model import SentenceEncoder, count_params, with_factorized_embedding, word_embedding_matrix
from .recipes import VariantRecipe
from .recover import RecoverConfig, distill
from .source import SourceModel, load_source

log = logging.getLogger(__name__)


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
            "numpy": np.__version__}


@dataclass
class BuildContext:
    """What several variants share: the source model, data and cached embeddings."""

    out_root: Path
    data_dir: Path
    model_dir: Path | None = None
    progress: bool = True
    threads: int = 0
    _embedded: dict[str, Embedded] = field(default_factory=dict)

    @cached_property
    def source(self) -> SourceModel:
        return load_source(self.model_dir)

    @cached_property
    def eval_set(self) -> EvalSet:
        return EvalSet.load(self.data_dir)

    @property
    def cache_dir(self) -> Path:
        path = self.out_root / ".cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def counts(self, corpus: str | None) -> np.ndarray:
        texts = read_text_file(Path(corpus)) if corpus else train_sentences(self.data_dir)
        return token_counts(self.source.tokenizer_file, texts, self.source.vocab_size)

    def remember(self, name: str, emb: Embedded) -> None:
        """Keep a just-built variant's eval embeddings for the variants compared with it."""
        self._embedded[name] = emb

    def embedded(self, name: str) -> Embedded:
        """The eval-set embeddings of a built variant (cached on disk, keyed by its model's sha256)."""
        if name in self._embedded:
            return self._embedded[name]
        model_dir = self.out_root / name
        if not (model_dir / contract.MODEL_FILE).is_file():
            raise PipelineError(f"baseline {name} is not built in {self.out_root}; build it first")
        sha = sha256_file(model_dir / contract.MODEL_FILE)
        cache = self.cache_dir / f"eval-{name}.npz"
        if cache.is_file():
            data = np.load(cache)
            if str(data["sha"]) == sha:
                emb = Embedded(data["sts_u"], data["sts_v"], data["sst_test"], data["sst_train"])
                self._embedded[name] = emb
                return emb
        emb = embed_eval_set(OnnxEncoder(model_dir, threads=self.threads), self.eval_set)
        np.savez(cache, sha=sha, **dataclasses.asdict(emb))
        self._embedded[name] = emb
        return emb

    def sample_train(self, num: int, max_length: int, seed: int) -> tuple[list[str], list[list[int]]]:
        """A seeded sample of train sentences and their token ids (no padding)."""
        sentences = train_sentences(self.data_dir)
        pick = np.random.default_rng(seed).permutation(len(sentences))[:num]
        texts = [sentences[i] for i in pick]
        if not texts:
            raise ConfigError("training corpus is empty")
        tok = load_tokenizer(self.source.tokenizer_file, max_length)
        tok.no_padding()
        return texts, [e.ids for e in tok.encode_batch(texts)]

    def sensitivity(self, bert, num: int, seed: int) -> np.ndarray:
        """The encoder's sensitivity metric G from a seeded sample of train sentences (cached on disk,
        keyed by the model's weights and the sample)."""
        from .sensitivity import estimate_metric

        digest = hashlib.sha256()
        for name, tensor in sorted(bert.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        key = digest.hexdigest()[:16]
        cache = self.cache_dir / f"sensitivity-{key}-{num}-{seed}.npy"
        if cache.is_file():
            return np.load(cache)
        _, ids = self.sample_train(num, SENSITIVITY_MAX_LENGTH, seed)
        log.info("sensitivity: probing the encoder on %d train sentences", len(ids))
        G_hh = estimate_metric(bert, ids, seed=seed)
        np.save(cache, G_hh)
        return G_hh

    def distill_corpus(self, baseline: str, num: int, max_length: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
        """Token ids and the baseline's (teacher's) embeddings of a seeded sample of train sentences."""
        texts, ids = self.sample_train(num, max_length, seed)
        model_dir = self.out_root / baseline
        sha = sha256_file(model_dir / contract.MODEL_FILE)
        cache = self.cache_dir / f"teacher-{baseline}-{num}-{max_length}-{seed}.npz"
        if cache.is_file():
            cached = np.load(cache)
            if str(cached["sha"]) == sha:
                return ids, cached["vecs"]
        log.info("teacher: embedding %d train sentences with %s", len(texts), baseline)
        vecs = OnnxEncoder(model_dir, max_length=max_length, threads=self.threads).encode(texts)
        np.savez(cache, sha=sha, vecs=vecs)
        return ids, vecs

    def augmented_corpus(self, baseline: str, ids: list[list[int]], counts: np.ndarray | None,
                         rc: RecoverConfig) -> tuple[list[list[int]], np.ndarray]:
        """Rare-token copies of the distillation sentences (compression/augment.py) and the baseline's
        embeddings of them (cached like the teacher's)."""
        from tokenizers import Tokenizer

        from .augment import rare_tokens, replace_tokens

        if counts is None:
            counts = self.counts(None)
        vocab = Tokenizer.from_file(str(self.source.tokenizer_file)).get_vocab()
        candidates = rare_tokens(counts, vocab, rc.augment_below)
        extra = replace_tokens(ids, candidates, rc.augment_share, rc.augment_tokens, rc.seed)
        model_dir = self.out_root / baseline
        digest = hashlib.sha256(np.concatenate([np.asarray(r) for r in extra]).tobytes() if extra else b"")
        digest.update(sha256_file(model_dir / contract.MODEL_FILE).encode())
        cache = self.cache_dir / f"teacher-augmented-{baseline}-{digest.hexdigest()[:16]}.npy"
        if cache.is_file():
            return extra, np.load(cache)
        log.info("teacher: embedding %d augmented sentences (%d rare tokens to draw from) with %s",
                 len(extra), len(candidates), baseline)
        vecs = OnnxEncoder(model_dir, threads=self.threads).encode_ids(extra)
        np.save(cache, vecs)
        return extra, vecs


SENSITIVITY_MAX_LENGTH = 64  # truncation of the sentences the sensitivity metric is estimated on
SMOOTH_CALIBRATION_SENTENCES = 1024  # train sentences whose activations set the smoothing scales


def _commit_dir(tmp: Path, final: Path) -> None:
    """Swap the finished temporary directory into place (replacing an older build)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_variant(recipe: VariantRecipe, ctx: BuildContext) -> Manifest:
    try:
        ctx.out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"output directory is not writable: {ctx.out_root} ({exc.strerror})") from exc
    if not os.access(ctx.out_root, os.W_OK):
        raise PipelineError(f"output directory is not writable: {ctx.out_root}")
    src = ctx.source
    bert = src.bert
    if recipe.quantize.smooth_alpha is not None:
        _, calibration = ctx.sample_train(SMOOTH_CALIBRATION_SENTENCES, recipe.recover.max_length, recipe.recover.seed)
        bert = copy.deepcopy(bert)  # the source model stays as loaded for the other variants
        smooth_encoder(bert, calibration, recipe.quantize.smooth_alpha, share_qkv=recipe.quantize.smooth_shared_qkv)
    rank = None
    losses: list[float] = []
    if recipe.factorize is not None:
        counts = ctx.counts(recipe.corpus) if recipe.factorize.method != "svd" else None
        metric = (ctx.sensitivity(src.bert, recipe.factorize.metric_sentences, recipe.factorize.seed)
                  if recipe.factorize.metric == "sensitivity" else None)
        table_E = word_embedding_matrix(bert)
        factors = factorize(table_E, recipe.factorize, counts, metric)
        rank = factors.rank
        bert = with_factorized_embedding(bert, factors)
        if recipe.recover.steps:
            if recipe.baseline is None:
                raise ConfigError(f"{recipe.name}: recovery needs a baseline to distil from")
            rc = recipe.recover
            ids, teacher = ctx.distill_corpus(recipe.baseline, rc.num_sentences, rc.max_length, rc.seed)
            if rc.augment_share > 0:
                extra_ids, extra_teacher = ctx.augmented_corpus(recipe.baseline, ids, counts, rc)
                ids, teacher = ids + extra_ids, np.concatenate([teacher, extra_teacher])
            table_q = (recipe.quantize.table_bits, recipe.quantize.table_block) if recipe.quantize.table_bits else None
            anchor = (table_E, metric_root(metric)[0] if metric is not None else np.eye(table_E.shape[1])
                      ) if rc.anchor > 0 else None
            losses = distill(SentenceEncoder(bert), ids, teacher, rc, table_q, recipe.quantize.encoder_int8,
                             progress=ctx.progress, encoder_block=recipe.quantize.encoder_block,
                             anchor_target=anchor)
    encoder = SentenceEncoder(bert)

    tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.tmp-", dir=ctx.out_root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the service may run as another user
    try:
        fp32 = tmp / "model.fp32.onnx"
        export_onnx(encoder, fp32, src.vocab_size)
        check_parity(encoder, fp32, src.vocab_size, src.max_seq_length)
        quantize.apply(recipe.quantize, fp32, tmp / contract.MODEL_FILE)
        fp32.unlink()
        shutil.copy(src.tokenizer_file, tmp / contract.TOKENIZER_FILE)

        emb = embed_eval_set(OnnxEncoder(tmp, max_length=src.max_seq_length, threads=ctx.threads), ctx.eval_set)
        base = ctx.embedded(recipe.baseline) if recipe.baseline else None
        figures = quality(emb, ctx.eval_set, base)
        params = count_params(bert)
        manifest = Manifest(
            name=recipe.name,
            base_model=src.name,
            baseline=recipe.baseline,
            method=recipe.method,
            rank=rank,
            quantization=recipe.quantize.label,
            dim=src.hidden_size,
            max_seq_length=src.max_seq_length,
            params=Params(**params),
            bytes=Bytes(file=(tmp / contract.MODEL_FILE).stat().st_size,
                        embedding=embedding_bytes(tmp / contract.MODEL_FILE)),
            sha256=sha256_file(tmp / contract.MODEL_FILE),
            quality=Quality(**figures),
            recipe=dataclasses.asdict(recipe) | {"final_distill_loss": float(np.mean(losses[-50:])) if losses else None},
            versions=tool_versions(),
        )
        manifest.write(tmp)
        final = ctx.out_root / recipe.name
        _commit_dir(tmp, final)
        ctx.remember(recipe.name, emb)
        return manifest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
