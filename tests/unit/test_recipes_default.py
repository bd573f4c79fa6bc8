"""The recipe file's minilm-l6-fact is the default `compress` sizes for MiniLM's table: one default, not two."""
from compression.recipes import load_recipes
from compression.sizing import sized_recipe


def test_the_recipe_file_default_is_the_sized_default():
    fact = next(r for r in load_recipes() if r.name == "minilm-l6-fact")
    sized = sized_recipe("minilm-l6-fact", "minilm-l6", 30522, 384)
    assert (fact.factorize, fact.recover, fact.quantize) == (sized.factorize, sized.recover, sized.quantize)
