"""Property tests: whatever a user writes in a recipe or a --set, the answer is a Recipe or one clear error."""
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.errors import TransferkitError
from transferkit.recipes import Recipe, load_recipe, recipe_from_dict

KEYS = ["name", "data", "source", "image_size", "backbone", "weights", "strategy", "head", "units", "finetune",
        "epochs", "learning_rate", "augment", "rotation", "seed", "batch_size", "per_class", "x", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                      max_leaves=8)


def _accepts_or_explains(action):
    try:
        result = action()
    except TransferkitError as err:
        assert str(err) and "\n" not in str(err)
        return None
    assert isinstance(result, Recipe)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_any_mapping_is_a_recipe_or_one_clear_error(data):
    _accepts_or_explains(lambda: recipe_from_dict({"name": "fuzz", **data}))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), st.text(max_size=20))
def test_any_set_override_is_applied_or_refused_clearly(path, raw):
    assignment = ".".join(path) + "=" + raw
    recipe = _accepts_or_explains(lambda: load_recipe("demo", overrides=[assignment]))
    if recipe is not None and raw.strip():
        node = recipe.model_dump()
        for key in path:
            node = node[key]
        assert node is not None or yaml.safe_load(raw) is None


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_recipe_file_bytes_load_or_fail_clearly(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_bytes(content)
    try:
        result = _accepts_or_explains(lambda: load_recipe(str(path)))
    except UnicodeDecodeError:
        raise AssertionError("undecodable bytes must be a TransferkitError")
    assert result is None or result.name == "recipe"
