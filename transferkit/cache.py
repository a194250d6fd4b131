"""Where transferkit keeps what it computes once: ``$TRANSFERKIT_CACHE`` (default ``~/.cache/transferkit``)."""
import functools
import hashlib
import os
from pathlib import Path


def cache_root():
    """The root of transferkit's cache: features in ``features/``, converted weights in ``weights/``.

    Example:
        >>> cache_root() / "features"
        PosixPath('/home/me/.cache/transferkit/features')
    """
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit")).expanduser()


def file_digest(path):
    """The SHA-256 of the file at ``path`` (hex), computed once per file version (path, size and mtime).

    Example:
        >>> file_digest("hed_bsds500.weights.h5")[:12]
        '4502df9d0a88'
    """
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
