"""The recipe file's minilm-l6-fact is a recipe `compress` sizes for MiniLM's table — at 12×, the ratio
`compress --min-fidelity int8` settles on for this model — so the bundled default and the front door
share one method, not two."""

from compression.recipes import load_recipes
from compression.table.sizing import FALLBACK_RATIOS, sized_recipe

BUNDLED_RATIO = 12.0


def test_the_recipe_file_default_is_a_sized_recipe():
    assert BUNDLED_RATIO in FALLBACK_RATIOS  # a size the no-loss search can land on
    fact = next(r for r in load_recipes() if r.name == "minilm-l6-fact")
    sized = sized_recipe("minilm-l6-fact", "minilm-l6", 30522, 384, target_ratio=BUNDLED_RATIO)
    assert (fact.factorize, fact.recover, fact.quantize, fact.graph) == (
        sized.factorize,
        sized.recover,
        sized.quantize,
        sized.graph,
    )
    assert fact.graph.tanh_gelu and fact.graph.remove_padding
