import pytest

from transferkit.errors import TransferkitError
from transferkit.recipes import apply_override, list_recipes, load_recipe, recipe_from_dict


def test_shipped_recipes_load_and_validate():
    names = list_recipes()
    assert {"demo", "cats_dogs", "flowers"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.strategy in ("feature_extraction", "frozen_augment", "finetune", "scratch")


def test_recipe_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_recipe("demo").data.source == "sample"


def test_recipe_by_path_and_round_trip_through_yaml(tmp_path):
    recipe = load_recipe("demo", overrides=["finetune.unfreeze_blocks=2", "image_size=48"])
    path = tmp_path / "mine.yaml"
    path.write_text(recipe.to_yaml())
    again = load_recipe(str(path))
    assert again == recipe
    assert again.finetune.unfreeze_blocks == 2 and again.image_size == 48


def test_overrides_parse_values_as_yaml_and_coerce_types():
    recipe = load_recipe("demo", overrides=["finetune.learning_rate=1e-4", "augment.flip=none", "seed=7"])
    assert recipe.finetune.learning_rate == pytest.approx(1e-4)
    assert recipe.augment.flip == "none"
    assert recipe.seed == 7


def test_top_level_fields_override_the_recipe():
    recipe = load_recipe("demo", strategy="scratch", image_size=40)
    assert (recipe.strategy, recipe.image_size) == ("scratch", 40)


@pytest.mark.parametrize("override, expected", [
    ("finetune.unfreez_blocks=2", "unknown key 'finetune.unfreez_blocks' in finetune (did you mean 'unfreeze_blocks'?)"),
    ("imagesize=3", "unknown key 'imagesize' in recipe (did you mean 'image_size'?)"),
    ("epochs=3", "unknown key 'epochs' in recipe (a key of feature_extraction.epochs, frozen_augment.epochs, "
                 "finetune.epochs, scratch.epochs; --epochs sets the last stage's)"),
    ("unfreeze_blocks=2", "unknown key 'unfreeze_blocks' in recipe (a key of finetune.unfreeze_blocks)"),
    ("image_size=big", "image_size"),
    ("finetune.learning_rate=-1", "finetune.learning_rate"),
    ("head.pooling=median", "head.pooling"),
    ("novalue", "key=value"),
])
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(TransferkitError) as err:
        load_recipe("demo", overrides=[override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_a_recipe_file_is_rejected_with_the_key_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  sorce: sample\n")
    with pytest.raises(TransferkitError, match=r"unknown key 'data.sorce'.*did you mean 'source'"):
        load_recipe(str(path))


def test_wrong_type_in_a_recipe_file_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: [1, 2]\n")
    with pytest.raises(TransferkitError, match="batch_size"):
        load_recipe(str(path))


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(TransferkitError, match="did you mean 'demo'"):
        load_recipe("demoo")


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(TransferkitError, match="not valid YAML"):
        load_recipe(str(path))


def test_apply_override_builds_nested_sections():
    assert apply_override({}, "head.units=128") == {"head": {"units": 128}}


def test_recipe_from_dict_requires_a_name():
    with pytest.raises(TransferkitError, match="name"):
        recipe_from_dict({})


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", ".hidden", ""])
def test_recipe_names_cannot_leave_the_output_folder(tmp_path, name):
    with pytest.raises(TransferkitError, match="'name'"):
        recipe_from_dict({"name": name})


def test_yaml_syntax_error_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nimage_size: 64\nhead:\n  units: [1, 2\n")
    with pytest.raises(TransferkitError, match=r"bad\.yaml is not valid YAML: line \d+, column \d+: expected ','"):
        load_recipe(str(path))


def test_finetune_stages_follow_the_unfreeze_schedule():
    recipe = load_recipe("demo", ["finetune.epochs=6", "finetune.unfreeze_schedule=[[0, 1], [2, 2], [4, 3]]"])
    stages = recipe.finetune.stages()
    assert [(s.name, s.epochs, s.unfreeze_blocks) for s in stages] == [
        ("head", recipe.finetune.head_epochs, None), ("finetune", 2, 1), ("finetune-2", 2, 2), ("finetune-3", 2, 3)]
    assert recipe.total_epochs() == recipe.finetune.head_epochs + 6 and recipe.finetune.max_unfrozen() == 3
    assert [s.unfreeze_blocks for s in load_recipe("demo").finetune.stages()] == [None, 1]


@pytest.mark.parametrize("schedule", ["[[1, 1]]", "[[0, 1], [0, 2]]", "[[0, 1], [3, -1]]", "[]"])
def test_a_bad_unfreeze_schedule_is_refused_in_one_line(schedule):
    with pytest.raises(TransferkitError, match="unfreeze_schedule"):
        load_recipe("demo", [f"finetune.unfreeze_schedule={schedule}"])


def test_learning_rates_take_a_number_or_auto():
    assert load_recipe("demo", ["finetune.learning_rate=auto"]).finetune.learning_rate == "auto"
    for bad in ("0", "-1", "fast"):
        with pytest.raises(TransferkitError, match="learning_rate"):
            load_recipe("demo", [f"finetune.learning_rate={bad}"])


def test_replace_changes_a_copy_and_validates():
    recipe = load_recipe("demo")
    changed = recipe.replace({"finetune.epochs": 3, "image_size": 96})
    assert (changed.finetune.epochs, changed.image_size) == (3, 96)
    assert recipe.image_size != 96
    with pytest.raises(TransferkitError, match="image_size"):
        recipe.replace({"image_size": 0})


def test_a_scratch_run_trains_at_scratch_image_size_unless_a_size_is_asked_for():
    demo = load_recipe("demo")
    assert demo.scratch.image_size == 64 and demo.image_size == 224
    assert demo.replace({"strategy": "scratch"}).image_size == 64  # how compare plans its scratch run
    assert load_recipe("demo", strategy="scratch").image_size == 64
    assert load_recipe("demo", strategy="feature_extraction").image_size == 224
    assert load_recipe("demo", strategy="scratch", image_size=96).image_size == 96
    assert load_recipe("demo", ["image_size=128"], strategy="scratch").image_size == 128


def test_a_folder_given_as_the_recipe_is_the_folder_recipes_data(tmp_path):
    from transferkit.recipes import recipe_or_folder

    (tmp_path / "photos" / "cat").mkdir(parents=True)
    assert recipe_or_folder(tmp_path / "photos") == ("folder", tmp_path / "photos")
    assert recipe_or_folder("demo") == ("demo", None)
    assert recipe_or_folder(tmp_path / "photos", data="other/") == (tmp_path / "photos", "other/")  # data given
    with pytest.raises(TransferkitError, match=r"unknown recipe or folder '.*photoz' \(did you mean '.*photos'\?\)"):
        recipe_or_folder(tmp_path / "photoz")
