"""`compress(source, out_dir)`: the product's front door, which `python -m compression compress` calls.

One call builds what a user needs to serve their own encoder beside its compressed variant:
the baseline export `<name>` (unless it is built already), `<name>-fact` with the default recipe
sized to the model's table (compression.table.sizing), and the classification heads where their data
exists. Both directories land in out_dir, which the service serves as is.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from common.manifest import Manifest
from compression.errors import ConfigError, PipelineError
from compression.recipes import VariantRecipe

log = logging.getLogger(__name__)

DEFAULT_SOURCE_NAME = "minilm-l6"  # the bundled all-MiniLM-L6-v2 keeps the recipe file's names


def check_device(device: str) -> None:
    if device == "cpu":
        return
    if not device.startswith("cuda"):
        raise ConfigError(f"--device {device!r}; choose cpu or cuda")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available on this machine")


def _baseline_is_built(out_dir: Path, name: str, source_path: Path) -> bool:
    """True when out_dir/name holds a baseline of this source; an unrelated one is an error, not overwritten."""
    if not (out_dir / name / "manifest.json").is_file():
        return False
    manifest = Manifest.read(out_dir / name)
    built_from = manifest.source.get("path")
    if manifest.baseline is not None or (built_from and Path(built_from) != source_path):
        raise ConfigError(f"{out_dir / name} already holds another model ({built_from or manifest.base_model}); "
                          "pass --name or another --out")
    return True


def compress(source: str | Path | None = None, out_dir: str | Path = "models", *, name: str | None = None,
             target_ratio: float | None = 16.0, max_table_mb: float | None = None,
             corpus: str | Path | None = None, data_dir: str | Path | None = None, device: str = "cpu",
             seed: int = 0, pooling: str | None = None, tokenizer: str | Path | None = None,
             overrides: dict | None = None, heads: bool = True, progress: bool = True, threads: int = 0,
             diagnose: bool = False, min_fidelity: float | str | None = None, prompt: str | None = None) -> Manifest:
    """Compress a BERT-family sentence encoder (a sentence-transformers or Hugging Face folder, or an ONNX
    export) into out_dir/<name> and out_dir/<name>-fact; returns the compressed variant's manifest.

    source: None for the bundled all-MiniLM-L6-v2. corpus: the texts to learn from (a file with one text
    per line, .jsonl with a "text" field, or a folder of them); None uses the shared data's train splits
    where they exist. data_dir: where STS-B, SST-2 and TREC are looked for (evaluations and heads run only
    where they exist). overrides: explicit settings laid over the sized recipe (compression.table.sizing).
    diagnose: also measure where the variant's infidelity comes from (compression.evaluation.diagnose).
    prompt: the name of the model's prompt to embed with and serve by default ("none": none; None: the
    source's default prompt, else its "query" prompt; compression.sources.load.choose_prompt).
    min_fidelity: the held-out fidelity the variant must reach ("int8": that of onnxruntime's plain int8
    export of the same model, measured on this CPU); if the sized table misses it, larger
    tables (compression.table.sizing.larger_tables) are built in turn until one does. The manifest's `sizing`
    lists every attempt; if none reaches it, the largest stays built and PipelineError says so.
    """
    from compression.build import BuildContext, build_variant, ensure_writable
    from compression.corpus import default_data_dir
    from compression.table.sizing import larger_tables, sized_recipe

    check_device(device)
    _check_min_fidelity(min_fidelity, max_table_mb, overrides or {})
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    ensure_writable(out_dir)
    try:
        ctx = BuildContext(out_root=out_dir, data_dir=Path(data_dir) if data_dir else default_data_dir(),
                           model_dir=Path(source) if source is not None else None, progress=progress,
                           threads=threads, corpus_path=Path(corpus) if corpus is not None else None, device=device,
                           pooling=pooling, tokenizer=Path(tokenizer) if tokenizer is not None else None, seed=seed,
                           diagnose=diagnose, prompt=prompt)
        src = ctx.source  # refuses an unsupported or broken source before anything is built
        ctx.prompt_name  # an unknown --prompt is refused before anything is built
        name = name or (DEFAULT_SOURCE_NAME if source is None else src.name)
        ctx.corpus  # a missing corpus is a one-line error before the first build
        # Sized (and every setting checked) before anything is built: a bad flag leaves nothing behind.
        recipe = sized_recipe(f"{name}-fact", name, src.vocab_size, src.hidden_size, target_ratio=target_ratio,
                              max_table_mb=max_table_mb, seed=seed, overrides=overrides)
    except BaseException:
        if created:  # only the source's scratch cache is in it: no directory is left behind either
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    start = time.time()
    if not _baseline_is_built(out_dir, name, src.path):
        build_variant(VariantRecipe(name=name, description=f"uncompressed fp32 baseline of {src.path}"), ctx)
        log.info("%s: baseline built in %.0fs", name, time.time() - start)
    tries = [recipe]
    if min_fidelity is not None:
        tries += larger_tables(recipe, src.vocab_size, src.hidden_size, target_ratio, seed=seed, overrides=overrides)
        if min_fidelity == "int8":
            min_fidelity = ctx.int8_heldout_fidelity(name)
            log.info("%s: onnxruntime's plain int8 export measures held-out fidelity %.5f here: the target",
                     name, min_fidelity)
    manifest, attempts, met = _build_until_faithful(tries, ctx, min_fidelity)
    if min_fidelity is not None:
        manifest.sizing = {"min_fidelity": min_fidelity, "met": met, "attempts": attempts}
        manifest.write(out_dir / recipe.name)
    if heads:
        manifest = _add_heads(out_dir, [name, recipe.name], ctx.data_dir, threads) or manifest
    log.info("%s: built in %.0fs (table %.2f MB, fidelity %.5f / p1 %.5f)", recipe.name, time.time() - start,
             manifest.bytes.embedding / 1e6, manifest.quality.fidelity_mean, manifest.quality.fidelity_p1)
    if not met:
        last = attempts[-1]
        raise PipelineError(f"no table reached held-out fidelity {min_fidelity:g}: the largest tried ({last['table_ratio']}× "
                            f"smaller, {last['codes']} codes per token) measured {last['heldout_fidelity_mean']}; it is "
                            f"kept in {out_dir / recipe.name}")
    return manifest


def _build_until_faithful(tries: list[VariantRecipe], ctx, min_fidelity: float | None
                          ) -> tuple[Manifest, list[dict], bool]:
    """Build each recipe in turn (all under one name) until one's held-out fidelity reaches min_fidelity
    (None: the first); the last built's manifest, a summary of every attempt, and whether it reached it."""
    from compression.build import build_variant
    from compression.table.sizing import FP32

    src, attempts = ctx.source, []
    for attempt in tries:
        log.info("%s: %s", attempt.name, attempt.description)
        manifest = build_variant(attempt, ctx)
        heldout = manifest.quality.heldout_fidelity_mean
        attempts.append({"codes": attempt.factorize.subspaces, "rank": attempt.factorize.rank,
                         "table_ratio": round(src.vocab_size * src.hidden_size * FP32 / manifest.bytes.embedding, 2),
                         "heldout_fidelity_mean": heldout, "heldout_fidelity_p1": manifest.quality.heldout_fidelity_p1})
        if min_fidelity is None or heldout >= min_fidelity:
            return manifest, attempts, True
        log.info("%s: held-out fidelity %.5f < %g", attempt.name, heldout, min_fidelity)
    return manifest, attempts, False


def _check_min_fidelity(min_fidelity: float | str | None, max_table_mb: float | None, overrides: dict) -> None:
    if min_fidelity is None:
        return
    if min_fidelity != "int8" and not (isinstance(min_fidelity, (int, float)) and 0 < min_fidelity < 1):
        raise ConfigError(f"--min-fidelity must be between 0 and 1, or int8, got {min_fidelity}")
    fixed = {"method", "rank", "subspaces"} & set(overrides.get("factorize", {}))
    if max_table_mb is not None or fixed:
        what = "--max-table-mb" if max_table_mb is not None else "--" + sorted(fixed)[0]
        raise ConfigError(f"--min-fidelity chooses the table's size itself; it cannot be combined with {what}")


def _add_heads(out_dir: Path, names: list[str], data_dir: Path, threads: int) -> Manifest | None:
    """The standard heads for each variant where their data exists; the last variant's manifest."""
    from compression.evaluation.heads import add_heads, standard_tasks

    tasks = standard_tasks(data_dir)
    manifest = None
    for name in names:
        todo = {t: d for t, d in tasks.items() if not (out_dir / name / "heads" / f"{t}.json").is_file()}
        manifest = add_heads(out_dir / name, todo, threads=threads) if todo else Manifest.read(out_dir / name)
    return manifest if tasks else None
