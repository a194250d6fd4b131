"""The strategy registry: what each strategy says of itself is what replica scaling, compare and the CLI read."""
import pytest

from transferkit.comparison import default_strategies
from transferkit.recipes import load_recipe
from transferkit.strategies import STRATEGIES
from transferkit.strategies.runtime import scaled_for_replicas


def test_every_strategy_names_its_section_stage_and_rates():
    recipe = load_recipe("demo")
    for name, spec in STRATEGIES.items():
        assert spec.section(recipe) is getattr(recipe, name) and spec.description
        assert "learning_rate" in spec.rate_keys(recipe)
        assert spec.stages(recipe)[0].name in ("head", "scratch")
    assert set(STRATEGIES["finetune"].rate_keys(recipe)) == {"head_learning_rate", "learning_rate"}
    assert [name for name, spec in STRATEGIES.items() if not spec.uses_backbone] == ["scratch"]


def test_replica_scaling_scales_every_rate_of_every_strategy_but_auto():
    recipe = load_recipe("demo", ["feature_extraction.learning_rate=auto"])
    scaled = scaled_for_replicas(recipe, 4)
    for name, spec in STRATEGIES.items():
        for key in spec.rate_keys(recipe):
            before, after = getattr(spec.section(recipe), key), getattr(spec.section(scaled), key)
            assert after == ("auto" if before == "auto" else pytest.approx(before * 4)), (name, key)
    assert scaled.batch_size == recipe.batch_size * 4


def test_compare_runs_the_from_scratch_reference_first():
    order = default_strategies()
    assert order[0] == "scratch" and set(order) == set(STRATEGIES)
