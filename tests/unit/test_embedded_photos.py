"""The embedded photo sample (the demo's data): tiles of ten free photos, cut into splits that share no pixel."""
import numpy as np
import pytest

from transferkit.data import embedded
from transferkit.data.sources import load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import load_recipe


@pytest.fixture(scope="module")
def photos():
    return embedded.load_photos()


def test_photos_load_as_ten_classes_of_64px_rgb_tiles_in_fixed_counts(photos):
    assert len(photos.class_names) == 10 and "cat" in photos.class_names
    for name, (_, count) in embedded.PHOTO_BANDS.items():
        images, labels = getattr(photos, name)
        assert images.shape == (10 * count, 64, 64, 3) and images.dtype == np.uint8
        assert np.array_equal(np.bincount(labels), [count] * 10)


def test_photos_are_the_same_tiles_on_every_load(photos):
    again = embedded.load_photos()
    for name in embedded.PHOTO_BANDS:
        assert np.array_equal(getattr(photos, name)[0], getattr(again, name)[0])


def test_tiles_come_only_from_their_band_of_the_photo_and_skip_flat_ones():
    width = 200
    columns = np.tile(np.arange(width, dtype=np.uint8), (100, 1))  # each pixel holds its column
    photo = np.stack([columns] * 3, axis=-1)
    photo[:, 100:120] = 7  # a flat strip: no tile may lie inside it
    tiles = embedded.photo_tiles(photo, (0.5, 0.7), 25, 16, seed=3)
    assert tiles.shape == (25, 16, 16, 3)
    touched = np.unique(tiles)
    assert touched.max() < 140 and ((touched >= 100) | (touched == 7)).all()
    assert all(tile.std() >= 12 for tile in tiles)
    with pytest.raises(TransferkitError, match="could not cut"):
        embedded.photo_tiles(np.zeros((40, 40, 3), np.uint8), (0.0, 1.0), 2, 16, seed=0)


def test_no_test_tile_repeats_a_training_tile(photos):
    train = {tile.tobytes() for tile in photos.train[0]}
    assert not any(tile.tobytes() in train for tile in photos.test[0])


def test_the_demo_recipe_draws_its_handful_per_class_from_the_photos():
    splits = load_data(load_recipe("demo").data)
    assert splits.class_names == embedded.load_photos().class_names
    assert [splits.counts[name] for name in ("train", "val", "test")] == [50, 200, 300]


def test_an_unknown_sample_name_is_one_line_with_the_valid_ones():
    with pytest.raises(TransferkitError, match="unknown embedded sample 'foto'.*photos"):
        load_data(load_recipe("demo", ["data.name=foto"]).data)
