"""Recipes as data: which variants to build and how, read from models/recipes.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compression.config import (
    FactorizeConfig,
    GraphConfig,
    PruneConfig,
    QuantizeConfig,
    RecoverConfig,
    with_settings,
)
from compression.errors import ConfigError

DEFAULT_RECIPES = Path(__file__).resolve().parents[1] / "models" / "recipes.toml"


@dataclass(frozen=True)
class VariantRecipe:
    name: str
    baseline: str | None = None  # variant it is compared with (and distilled from); None for the baseline
    factorize: FactorizeConfig | None = None  # None keeps the dense table
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)  # serving rewrites of the exported graph
    prune: PruneConfig = field(default_factory=PruneConfig)  # the encoder's FFN neurons kept
    corpus: str | None = None  # text file for token counts; None: the train splits in the data dir
    description: str = ""

    def __post_init__(self) -> None:
        if self.factorize is not None and self.factorize.method == "pq" and self.quantize.table_bits:
            raise ConfigError(f"{self.name}: pq codes are one byte already; leave quantize.table_bits unset")

    @property
    def method(self) -> str:
        return self.factorize.method if self.factorize else "none"


def _make(cls: type, table: dict[str, Any] | None, where: str):
    return None if table is None else with_settings(cls(), table, where)


def parse_variant(table: dict[str, Any]) -> VariantRecipe:
    name = table.get("name")
    if not name or not isinstance(name, str):
        raise ConfigError("every [[variant]] needs a string name")
    return VariantRecipe(
        name=name,
        baseline=table.get("baseline"),
        prune=_make(PruneConfig, table.get("prune"), f"{name}.prune") or PruneConfig(),
        factorize=_make(FactorizeConfig, table.get("factorize"), f"{name}.factorize"),
        recover=_make(RecoverConfig, table.get("recover"), f"{name}.recover") or RecoverConfig(),
        quantize=_make(QuantizeConfig, table.get("quantize"), f"{name}.quantize") or QuantizeConfig(),
        graph=_make(GraphConfig, table.get("graph"), f"{name}.graph") or GraphConfig(),
        corpus=table.get("corpus"),
        description=table.get("description", ""),
    )


def load_recipes(path: Path = DEFAULT_RECIPES) -> list[VariantRecipe]:
    """Variants in file order; a variant's baseline must come before it."""
    if not Path(path).is_file():
        raise ConfigError(f"recipe file not found: {path}")
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    variants = [parse_variant(t) for t in data.get("variant", [])]
    seen: set[str] = set()
    for v in variants:
        if v.baseline is not None and v.baseline not in seen:
            raise ConfigError(f"{path}: variant {v.name} names baseline {v.baseline} which is not listed before it")
        seen.add(v.name)
    if not variants:
        raise ConfigError(f"{path}: no [[variant]] entries")
    return variants
