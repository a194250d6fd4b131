"""Shared test set-up: quiet TensorFlow, an isolated feature cache, offline by default."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own feature cache and Keras home, and the network counts as unreachable."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")


def cli(*args, cwd, env_extra=None):
    """The ``transferkit`` command run in this process through click's ``CliRunner``, from ``cwd``: a
    ``CompletedProcess`` with the exit code, stdout and stderr a user would see, without the seconds each new
    Python pays to import TensorFlow. What only a separate process shows (kill -9, Ctrl-C, a fresh import, the
    README's main command) is tested with ``subprocess``.

    Example:
        >>> cli("list", "backbones", cwd=tmp_path).returncode
        0
    """
    import contextlib
    import subprocess

    from click.testing import CliRunner

    from transferkit.cli import main

    args = [str(arg) for arg in args]
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, args, env=env_extra, catch_exceptions=False)
    return subprocess.CompletedProcess(["transferkit", *args], result.exit_code, result.stdout, result.stderr)


def tiny_run(root, data, epochs=4, head_units=16, **kwargs):
    """A short feature-extraction run of ``demo_hed`` (VGG16 hed-bsds500 blocks 1-2, 32 px, batch 16) on ``data``,
    under ``root`` with its own feature cache, offline: for module and session fixtures, which the per-test
    isolation does not reach. ``kwargs`` go to :func:`transferkit.run`.

    Example:
        >>> result = tiny_run(tmp_path_factory.mktemp("export"), stripes, class_names=("h", "v"))
    """
    import transferkit

    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        env.setenv("TRANSFERKIT_OFFLINE", "1")
        return transferkit.run("demo_hed", strategy="feature_extraction", data=data, out=root / "runs",
                               image_size=32, epochs=epochs, verbose=0,
                               overrides=[f"head.units={head_units}", "batch_size=16", "base_blocks=2"], **kwargs)


def stripe_images(n, size=32, seed=0):
    """``n`` RGB uint8 images: class 0 has horizontal stripes, class 1 vertical ones (random phase, period, noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    coords = np.arange(size)
    images = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        period, phase = rng.integers(4, 9), rng.integers(0, 8)
        wave = ((coords + phase) // (period // 2)) % 2 * 160 + 40
        pattern = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
        noisy = pattern[..., None] + rng.normal(0, 20, (size, size, 3))
        images[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="session")
def stripes():
    """A tiny two-class data set (horizontal vs vertical stripes) split into train, val and test."""
    return {
        "train": stripe_images(96, seed=1),
        "val": stripe_images(32, seed=2),
        "test": stripe_images(64, seed=3),
    }


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of 96 stripe PNGs, one subfolder per class (horizontal, vertical), as a user's photos would be."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    images, labels = stripe_images(96, seed=5)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / ("horizontal", "vertical")[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def photos_run(tmp_path_factory, photos):
    """A tiny completed run on ``photos``: feature extraction on VGG16 (hed-bsds500) blocks 1-2 at 32 px, a few
    seconds of training. For tests that need some trained run (serving, loading), not a particular accuracy."""
    return tiny_run(tmp_path_factory.mktemp("photos_run"), str(photos))
