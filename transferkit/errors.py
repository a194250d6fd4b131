"""The one exception users see: a mistake or missing resource, said in one line."""
import difflib


class TransferkitError(Exception):
    """A user-facing error: the CLI prints its message on one line, with no traceback.

    Example:
        >>> raise TransferkitError("unknown backbone 'vgg61' (did you mean 'vgg16'?)")
    """


def did_you_mean(name, choices):
    """Return " (did you mean 'x'?)" for the closest of ``choices``, or "".

    Example:
        >>> did_you_mean("vgg61", ["vgg16", "resnet50"])
        " (did you mean 'vgg16'?)"
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
