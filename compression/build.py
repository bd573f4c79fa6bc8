"""Build one variant end to end into models/<name>/, atomically.

1 load (1b tanh GELU, 1c FFN pruning) → 2 (smooth) → 3 factorize → 4 recover → 5 export + parity
(5b serving rewrites, parity again) → 6 quantize (6b dense route) → 7 evaluate → 8 manifest;
the step modules' docstrings carry these numbers.
Everything is written into a hidden temporary directory beside the target and
renamed into place only when complete, so an interrupted or failed build
leaves no half-written model behind.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from common import contract
from common.fidelity import fidelity
from common.machine import cpu_info
from common.manifest import Bytes, Manifest, Params, Quality, sha256_file
from common.onnx_encoder import load_tokenizer
from common.probe_set import PROBE_FILE, PROBE_TEXTS, ProbeSet
from compression.cache import DiskCache
from compression.config import GraphConfig
from compression.corpus import (
    Corpus,
    has_eval_data,
    load_corpus,
    read_corpus,
    token_counts,
)
from compression.encoder.activation import tanh_gelu
from compression.encoder.prune import prune_ffn
from compression.encoder.smooth import smooth_encoder
from compression.errors import ConfigError, PipelineError, ShapeError, ToleranceError
from compression.evaluation.diagnose import Simulation, diagnose, diagnosis_table
from compression.evaluation.dimensions import measure as measure_dimensions
from compression.evaluation.embeddings import EvalEmbeddings
from compression.evaluation.evaluate import (
    EvalSet,
    evaluations,
    quality,
)
from compression.evaluation.int8_reference import language_report
from compression.evaluation.languages import (
    PairSet,
    load_pair_sets,
)
from compression.evaluation.output_types import measure as measure_output_types
from compression.export import dense_route, quantize, serving_graph
from compression.export.measure import embedding_bytes
from compression.export.onnx_export import check_parity, export_onnx
from compression.model import (
    SentenceEncoder,
    count_params,
    with_factorized_embedding,
    word_embedding_matrix,
)
from compression.recipes import VariantRecipe
from compression.recovery.recover import distill
from compression.recovery.teacher import augmented_corpus, distill_corpus
from compression.sources.load import load_source
from compression.sources.source_model import SourceModel
from compression.sources.st_config import choose_prompt
from compression.steps import StepLog
from compression.table.factorize import factorize
from compression.table.metric import metric_root
from compression.table.sensitivity import corpus_metric

log = logging.getLogger(__name__)


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
    }


@dataclass
class BuildContext:
    """What several variants share: the build's inputs (the source model, the corpus, the evaluation data),
    with two caches beside them — `disk` (arrays under .cache/, compression/cache.py) and `evals` (each
    variant's evaluation embeddings, compression/evaluation/embeddings.py). The work that uses them lives
    in the steps' modules: table/sensitivity.py (corpus_metric), table/trim.py (trim_source),
    recovery/teacher.py, evaluation/int8_reference.py. data_dir may lack the shared data sets; corpus
    (a user's file or folder) replaces their train splits as the texts training sees."""

    out_root: Path
    data_dir: Path | None
    model_dir: Path | None = None
    progress: bool = True
    threads: int = 0
    corpus_path: Path | list[Path] | None = None
    device: str = "cpu"
    pooling: str | None = None  # override of a plain or ONNX source's pooling mode
    tokenizer: Path | None = None  # tokenizer.json of an ONNX source that has none beside it
    seed: int = 0  # of the held-out slice
    prompt: str | None = None  # the prompt name to embed with ("none": none); None: sources.load.choose_prompt's
    diagnose: bool = (
        False  # measure where a factorized variant's infidelity comes from (compression/evaluation/diagnose.py)
    )
    eval_paths: list[Path] | None = None  # --eval: STS-style pair files, one per language
    # after trim_source: old id of each kept row, the full vocabulary's size, and the manifest's record
    id_map: np.ndarray | None = None
    full_vocab: int | None = None
    vocabulary: dict = field(default_factory=dict)
    _counts: dict[tuple, np.ndarray] = field(default_factory=dict)  # counts(), by corpus and tokenizer

    @cached_property
    def source(self) -> SourceModel:
        return load_source(self.model_dir, pooling=self.pooling, tokenizer=self.tokenizer, scratch=self.cache_dir)

    @cached_property
    def prompt_name(self) -> str | None:
        return choose_prompt(self.source.prompts, self.source.default_prompt_name, self.prompt)

    @property
    def prompt_text(self) -> str:
        return (self.source.prompts or {}).get(self.prompt_name, "") if self.prompt_name else ""

    @cached_property
    def corpus(self) -> Corpus:
        """The texts as the model is asked to embed them: with its prompt, in training and evaluation alike."""
        return load_corpus(self.corpus_path, self.data_dir, self.seed).with_prompt(self.prompt_text)

    @cached_property
    def eval_set(self) -> EvalSet | None:
        """STS-B and SST-2 where their data exists; None leaves fidelity as the only figure."""
        return EvalSet.load(self.data_dir).with_prompt(self.prompt_text) if has_eval_data(self.data_dir) else None

    @cached_property
    def evals(self) -> EvalEmbeddings:
        """Each built variant's evaluation embeddings, computed once (compression/evaluation/embeddings.py)."""
        return EvalEmbeddings(self)

    @cached_property
    def disk(self) -> DiskCache:
        """Arrays computed once and kept under out_root/.cache/ (compression/cache.py)."""
        return DiskCache(self.out_root / ".cache")

    @property
    def cache_dir(self) -> Path:
        return self.disk.dir

    def counts(self, corpus: str | None) -> np.ndarray:
        """Token counts of the corpus (or a recipe's own corpus file), once per corpus and tokenizer: the
        sizing, every table size the search builds and the augmentation read them."""
        key = (corpus, str(self.source.tokenizer_file))
        if key not in self._counts:
            texts = read_corpus(Path(corpus)) if corpus else self.corpus.train
            self._counts[key] = token_counts(self.source.tokenizer_file, texts, self.source.vocab_size)
        return self._counts[key]

    def sample_train(self, num: int, max_length: int, seed: int) -> tuple[list[str], list[list[int]]]:
        """A seeded sample of the corpus's training texts and their token ids (no padding)."""
        sentences = self.corpus.train
        pick = np.random.default_rng(seed).permutation(len(sentences))[:num]
        texts = [sentences[i] for i in pick]
        if not texts:
            raise ConfigError("training corpus is empty")
        return texts, self.token_ids(texts, max_length)

    def token_ids(self, texts: list[str], max_length: int) -> list[list[int]]:
        """The source tokenizer's ids of each text, truncated to max_length, unpadded."""
        tok = load_tokenizer(self.source.tokenizer_file, max_length)
        tok.no_padding()
        return [e.ids for e in tok.encode_batch(texts)]

    @cached_property
    def pair_sets(self) -> list[PairSet] | None:
        """--eval's per-language pair files; None without them."""
        return load_pair_sets(self.eval_paths) if self.eval_paths else None


SMOOTH_CALIBRATION_SENTENCES = 512  # corpus texts whose activations set the smoothing scales


@contextmanager
def staged_dir(out_root: Path, name: str) -> Iterator[Path]:
    """A hidden directory beside out_root/name to build into; swapped into place (replacing an older
    build) when the block ends normally, removed when it raises: a reader never sees half a model."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the service may run as another user
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final, old = out_root / name, None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_writable(out_root: Path) -> None:
    """Create the output directory, or say in one line why it cannot be written."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"output directory is not writable: {out_root} ({exc.strerror})") from exc
    if not os.access(out_root, os.W_OK):
        raise PipelineError(f"output directory is not writable: {out_root}")


def _rewrite_for_serving(
    encoder: SentenceEncoder, fp32: Path, config: GraphConfig, src: SourceModel
) -> serving_graph.RewriteReport:
    """Step 5b: the serving rewrites on a copy of the exported graph, kept only if the copy passes the
    same parity check against torch; otherwise the plain graph stays and the reason is logged."""
    if not config.fuse_attention:
        return serving_graph.RewriteReport()
    candidate = fp32.with_name("model.serving.onnx")
    shutil.copy(fp32, candidate)
    try:
        report = serving_graph.rewrite(candidate, config, src.bert.config.num_attention_heads)
        if report.skipped is None:
            check_parity(encoder, candidate, src.vocab_size, src.max_seq_length)
            candidate.replace(fp32)
            log.info(
                "serving graph: %d attention blocks fused%s",
                report.fused_attention,
                ", padding removed" if report.padding_removed else "",
            )
            return report
    except (ShapeError, ToleranceError) as exc:
        report = serving_graph.RewriteReport(skipped=f"parity after rewrite: {exc}")
    finally:
        candidate.unlink(missing_ok=True)
    log.warning("serving graph left plain: %s", report.skipped)
    return report


def _route_dense(model_file: Path, vocab_size: int) -> bool:
    """Step 6b: the dense route, kept only if it gives the unpadded graph's embeddings (checked inside)."""
    try:
        routed = dense_route.route(model_file, vocab_size)
    except dense_route.UnsupportedGraph as exc:
        log.warning("dense route left out: %s", exc)
        return False
    if routed:
        log.info("serving graph: batches without padding skip the unpadding (one If, weights shared)")
    return routed


def _prepare_encoder(recipe: VariantRecipe, ctx: BuildContext):
    """Steps 1b–2: the source encoder as it will be served (tanh GELU, FFN pruning, smoothing), on a copy
    so the source stays as loaded for the other variants. (model, GELUs swapped, FFN neurons kept)"""
    src = ctx.source
    bert = src.bert
    if recipe.graph.tanh_gelu or recipe.quantize.smooth_alpha is not None or recipe.prune.ffn_keep < 1:
        bert = copy.deepcopy(bert)
    swapped = kept = 0
    if recipe.graph.tanh_gelu:
        swapped = tanh_gelu(bert)
        log.info("activation: %d exact GELUs replaced by the tanh approximation (FastGelu when served)", swapped)
    if recipe.prune.ffn_keep < 1:
        _, calibration = ctx.sample_train(recipe.prune.sentences, recipe.recover.max_length, recipe.recover.seed)
        inter = bert.config.intermediate_size
        kept = prune_ffn(bert, calibration, recipe.prune.ffn_keep, recipe.prune.ridge)
        log.info(
            "pruning: %d of each FFN's %d neurons kept, output projections refitted on %d corpus texts",
            kept,
            inter,
            len(calibration),
        )
    if recipe.quantize.smooth_alpha is not None:
        _, calibration = ctx.sample_train(SMOOTH_CALIBRATION_SENTENCES, recipe.recover.max_length, recipe.recover.seed)
        smoothed = smooth_encoder(
            bert,
            calibration,
            recipe.quantize.smooth_alpha,
            share_qkv=recipe.quantize.smooth_shared_qkv,
            ffn_output=recipe.quantize.smooth_ffn_output,
            min_ratio=recipe.quantize.smooth_min_ratio,
        )
        total = sum(type(m).__name__ == "Linear" for m in src.bert.encoder.modules())
        log.info(
            "smoothing: %d of the encoder's %d linears (α %g%s)",
            smoothed,
            total,
            recipe.quantize.smooth_alpha,
            ""
            if recipe.quantize.smooth_min_ratio is None
            else f"; inputs whose outlier ratio is under {recipe.quantize.smooth_min_ratio:g} left plain",
        )
    return bert, swapped, kept


def _simulation(recipe: VariantRecipe) -> Simulation:
    """The export's quantization as recovery and diagnosis simulate it."""
    q = recipe.quantize
    return Simulation(
        (q.table_bits, q.table_block) if q.table_bits else None,
        q.encoder_int8,
        q.encoder_block,
        64 if q.reduce_range else 127,
    )


def _recover(
    recipe: VariantRecipe,
    ctx: BuildContext,
    bert,
    table_E: np.ndarray,
    counts: np.ndarray | None,
    metric: np.ndarray | None,
    sim: Simulation,
) -> list[float]:
    """Step 4: distil the factorized model towards the baseline's embeddings of the corpus (and rare-token
    copies of it), with the export's quantization simulated; the loss curve."""
    if recipe.baseline is None:
        raise ConfigError(f"{recipe.name}: recovery needs a baseline to distil from")
    src, rc = ctx.source, recipe.recover
    ids, teacher = distill_corpus(ctx, recipe.baseline, rc.num_sentences, rc.max_length, rc.seed)
    if rc.augment_share > 0:
        extra_ids, extra_teacher = augmented_corpus(ctx, recipe.baseline, ids, counts, rc)
        ids, teacher = ids + extra_ids, np.concatenate([teacher, extra_teacher])
    anchor = (
        (table_E, metric_root(metric)[0] if metric is not None else np.eye(table_E.shape[1])) if rc.anchor > 0 else None
    )
    return distill(
        SentenceEncoder(bert, src.pooling),
        ids,
        teacher,
        rc,
        sim.table_quant,
        sim.encoder_int8,
        progress=ctx.progress,
        encoder_block=sim.encoder_block,
        anchor_target=anchor,
        device=ctx.device,
        weight_levels=sim.weight_levels,
        token_teacher=src.bert if rc.token_weight > 0 else None,
    )


def _export_for_serving(
    recipe: VariantRecipe, ctx: BuildContext, encoder: SentenceEncoder, tmp: Path, steps: StepLog
) -> serving_graph.RewriteReport:
    """Steps 5–6b: ONNX export with parity, the serving rewrites, quantization and the dense route, into
    tmp/model.onnx beside the tokenizer."""
    src = ctx.source
    fp32 = tmp / "model.fp32.onnx"
    with steps.step("export"):
        export_onnx(encoder, fp32, src.vocab_size)
        check_parity(encoder, fp32, src.vocab_size, src.max_seq_length)
        graph = _rewrite_for_serving(encoder, fp32, recipe.graph, src)
    with steps.step("quantize"):
        quantize.apply(recipe.quantize, fp32, tmp / contract.MODEL_FILE)
        fp32.unlink()
        if recipe.graph.dense_route and graph.padding_removed:
            graph = dataclasses.replace(graph, dense_route=_route_dense(tmp / contract.MODEL_FILE, src.vocab_size))
    shutil.copy(src.tokenizer_file, tmp / contract.TOKENIZER_FILE)
    return graph


def build_variant(recipe: VariantRecipe, ctx: BuildContext) -> Manifest:
    """One variant, top to bottom: prepare the encoder, compress the table, recover, export for serving,
    evaluate, write the manifest; staged in a hidden directory and committed whole."""
    ensure_writable(ctx.out_root)
    src = ctx.source
    steps = StepLog(recipe.name)
    with steps.step("prepare encoder"):
        bert, swapped, kept = _prepare_encoder(recipe, ctx)
    rank, losses, diagnosis = None, [], []
    sim = _simulation(recipe)
    if recipe.factorize is not None:
        with steps.step("compress table"):
            counts = ctx.counts(recipe.corpus) if recipe.factorize.method != "svd" else None
            metric = (
                corpus_metric(ctx, src.bert, recipe.factorize.metric_sentences, recipe.factorize.seed)
                if recipe.factorize.metric == "sensitivity"
                else None
            )
            table_E = word_embedding_matrix(bert)
            factors = factorize(table_E, recipe.factorize, counts, metric)
            rank = factors.rank
            bert = with_factorized_embedding(bert, factors)
        if recipe.recover.steps:
            with steps.step("recover"):
                losses = _recover(recipe, ctx, bert, table_E, counts, metric, sim)
        if ctx.diagnose and recipe.baseline:
            with steps.step("diagnose"):
                diagnosis = diagnose(
                    SentenceEncoder(bert, src.pooling),
                    table_E,
                    counts if counts is not None else ctx.counts(recipe.corpus),
                    ctx.token_ids(ctx.corpus.held_out, src.max_seq_length),
                    ctx.evals.embedded(recipe.baseline).held_out,
                    sim,
                )
            log.info(
                "%s: where the held-out infidelity comes from (torch, the export's quantization simulated):\n%s",
                recipe.name,
                diagnosis_table(diagnosis),
            )
    encoder = SentenceEncoder(bert, src.pooling)

    with staged_dir(ctx.out_root, recipe.name) as tmp:
        graph = _export_for_serving(recipe, ctx, encoder, tmp, steps)
        with steps.step("evaluate"):
            emb = ctx.evals.embed(tmp)
            base = ctx.evals.embedded(recipe.baseline) if recipe.baseline else None
            figures = quality(emb, ctx.eval_set, base)
            # The probe set: the first held-out texts and the baseline's embeddings of them, so the
            # service can measure this model's fidelity on whatever CPU it runs on.
            n_probe = min(PROBE_TEXTS, len(ctx.corpus.held_out))
            probe = ProbeSet(ctx.corpus.held_out[:n_probe], (base or emb).held_out[:n_probe])
            probe.write(tmp)
            probe_mean, probe_p1 = fidelity(emb.held_out[:n_probe], probe.reference)
            languages = language_report(ctx, tmp, recipe.baseline) if recipe.baseline else {}
            dimensions = measure_dimensions(emb, base or emb, ctx.eval_set)
            output_types = measure_output_types(emb, ctx.eval_set, emb.held_out[:n_probe])
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
            bytes=Bytes(
                file=(tmp / contract.MODEL_FILE).stat().st_size, embedding=embedding_bytes(tmp / contract.MODEL_FILE)
            ),
            sha256=sha256_file(tmp / contract.MODEL_FILE),
            quality=Quality(**figures),
            recipe=dataclasses.asdict(recipe)
            | {"final_distill_loss": float(np.mean(losses[-50:])) if losses else None},
            versions=tool_versions(),
            machine=cpu_info(),
            diagnosis=diagnosis,
            graph=dataclasses.asdict(graph)
            | ({"tanh_gelu": swapped} if swapped else {})
            | ({"ffn_kept": kept} if kept else {}),
            probe={
                "file": PROBE_FILE,
                "texts": n_probe,
                "fidelity_mean": round(probe_mean, 5),
                "fidelity_p1": round(probe_p1, 5),
            },
            pooling=src.pooling.mode,
            normalized=src.pooling.normalize,
            source=src.describe(),
            evaluations=evaluations(ctx.eval_set, ctx.data_dir, len(ctx.corpus.held_out), ctx.corpus.source),
            prompts=src.prompts or {},
            default_prompt_name=ctx.prompt_name,
            steps=steps.records,
            languages=languages,
            vocabulary=ctx.vocabulary if recipe.baseline else {},
            dimensions=dimensions,
            output_types=output_types,
        )
        manifest.write(tmp)
    ctx.evals.remember(recipe.name, emb)
    return manifest
