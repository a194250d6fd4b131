"""Property tests for image decoding: random and mutated bytes are decoded, skipped or refused, never a crash."""
import io

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transferkit.data.images import check_bytes, decode_file
from transferkit.errors import TransferkitError
from transferkit.predict import read_image


def _encoded(fmt):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [_encoded(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF")]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _agree(tmp_path, data):
    """The pre-flight check and the two decoders must agree: a file that passes decodes to RGB uint8."""
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    checked = check_bytes(data, str(path))
    if checked.error is None:
        image = decode_file(tf.constant(str(path)), tf.constant(checked.via_pil)).numpy()
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    else:
        assert checked.error and "\n" not in checked.error
    try:
        array = read_image(path)
    except TransferkitError as err:
        assert "\n" not in str(err)
    else:
        assert array.dtype == np.uint8 and array.shape[-1] == 3


@pytest.fixture
def scratch_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_images_are_decoded_or_refused(scratch_dir, data):
    _agree(scratch_dir, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_cleanly(scratch_dir, data):
    _agree(scratch_dir, data)


def test_a_decompression_bomb_is_refused_not_decoded(tmp_path):
    """Found by the fuzzer: a GIF whose header claims 40,000 x 40,000 pixels."""
    data = bytearray(SEEDS[3])
    at = data.index(b"\x2c\x00\x00\x00\x00")  # the image descriptor: left, top, width, height
    data[at + 5:at + 9] = (40000).to_bytes(2, "little") * 2
    assert check_bytes(bytes(data), "bomb.gif").error.startswith("too large to decode safely")
    (tmp_path / "bomb.gif").write_bytes(bytes(data))
    with pytest.raises(TransferkitError, match="bomb.gif: too large"):
        read_image(tmp_path / "bomb.gif")
