"""Keep native libraries' chatter (TensorFlow start-up, libjpeg complaints) off the user's terminal."""
import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null inside the block; Python's own ``sys.stderr`` writes after it.

    C and C++ code writes to the descriptor directly, so ``TF_CPP_MIN_LOG_LEVEL`` and Python-level
    redirection cannot stop it. A stream without a descriptor (pytest's capture, notebooks) is left alone.

    Example:
        >>> with native_stderr_silenced():
        ...     import tensorflow
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(devnull)
        os.close(saved)
