"""Per-language evaluation (`--eval`): STS-style pair files, one per language, each model's Spearman ×100
and its fidelity to the baseline (mean and 1st percentile over both sentences of every pair), beside
the same figures of onnxruntime's plain int8 of the baseline.

The table's sensitivity and the distillation follow the corpus, so a language missing from it can
lose more than int8 would; `falling_languages` names those, and compress says so in its last lines.
A file's language comes from its name (`stsb-de-dev.csv` → de, the STS Benchmark's `sts-dev.csv` →
en), else its stem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.fidelity import fidelity
from compression.corpus import read_pairs_file
from compression.errors import CorpusError


@dataclass(frozen=True)
class PairSet:
    language: str
    path: Path
    s1: list[str]
    s2: list[str]
    scores: np.ndarray

    def texts(self, prompt: str = "") -> list[str]:
        return [prompt + t for t in self.s1 + self.s2]


def language_of(path: Path) -> str:
    name = Path(path).name
    m = re.match(r"stsb-([a-z]{2}(?:-[a-z]+)?)-", name)
    if m:
        return m.group(1)
    if re.match(r"sts-(train|dev|test)\.csv$", name):
        return "en"
    return Path(path).stem


def load_pair_sets(paths: list[Path]) -> list[PairSet]:
    """One set per file (a folder: every .csv in it); two files of one language are refused."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.csv")) if p.is_dir() else [p]
    sets, seen = [], {}
    for f in files:
        lang = language_of(f)
        if lang in seen:
            raise CorpusError(f"--eval: {f} and {seen[lang]} are both language {lang!r}; pass one file per language")
        seen[lang] = f
        pairs = read_pairs_file(f)
        sets.append(PairSet(lang, f, pairs.s1, pairs.s2, pairs.scores))
    if not sets:
        raise CorpusError(f"--eval: no pair files in {', '.join(map(str, paths))}")
    return sets


def all_texts(sets: list[PairSet], prompt: str) -> list[str]:
    """Every set's texts in one list (one embedding pass per model)."""
    return [t for s in sets for t in s.texts(prompt)]


def split(vectors: np.ndarray, sets: list[PairSet]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """all_texts' embeddings back into (u, v) per language."""
    out, start = {}, 0
    for s in sets:
        n = len(s.s1)
        out[s.language] = (vectors[start : start + n], vectors[start + n : start + 2 * n])
        start += 2 * n
    return out


def _spearman(u: np.ndarray, v: np.ndarray, gold: np.ndarray) -> float:
    from compression.evaluation.evaluate import spearman_x100

    return round(spearman_x100(u, v, gold), 2)


def language_figures(
    sets: list[PairSet], model: np.ndarray, baseline: np.ndarray, int8: np.ndarray | None
) -> dict[str, dict]:
    """Per language: pairs, the model's and the baseline's Spearman, the model's fidelity and int8's."""
    ours, base = split(model, sets), split(baseline, sets)
    ref = split(int8, sets) if int8 is not None else {}
    figures = {}
    for s in sets:
        u, v = ours[s.language]
        bu, bv = base[s.language]
        mean, p1 = fidelity(np.concatenate([u, v]), np.concatenate([bu, bv]))
        row = {
            "pairs": len(s.s1),
            "stsb_spearman": _spearman(u, v, s.scores),
            "baseline_stsb_spearman": _spearman(bu, bv, s.scores),
            "fidelity_mean": round(mean, 5),
            "fidelity_p1": round(p1, 5),
        }
        if s.language in ref:
            iu, iv = ref[s.language]
            i_mean, i_p1 = fidelity(np.concatenate([iu, iv]), np.concatenate([bu, bv]))
            row |= {"int8_fidelity_mean": round(i_mean, 5), "int8_fidelity_p1": round(i_p1, 5)}
        figures[s.language] = row
    return figures


def falling_languages(figures: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """Languages whose mean or 1st-percentile fidelity is under int8's: (mean gap, p1 gap), positive = loss."""
    out = {}
    for lang, row in figures.items():
        if "int8_fidelity_mean" not in row:
            continue
        gaps = (
            round(row["int8_fidelity_mean"] - row["fidelity_mean"], 5),
            round(row["int8_fidelity_p1"] - row["fidelity_p1"], 5),
        )
        if max(gaps) > 0:
            out[lang] = gaps
    return out


def worst_language(figures: dict[str, dict]) -> str | None:
    return min(figures, key=lambda lang: figures[lang]["fidelity_mean"]) if figures else None
