"""Where transferkit keeps what it computes once: ``$TRANSFERKIT_CACHE`` (default ``~/.cache/transferkit``)."""
import os
from pathlib import Path


def cache_root():
    """The root of transferkit's cache: features in ``features/``, converted weights in ``weights/``.

    Example:
        >>> cache_root() / "features"
        PosixPath('/home/me/.cache/transferkit/features')
    """
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit")).expanduser()
