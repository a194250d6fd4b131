"""transferkit: transfer learning for image classification as a one-command job.

The public API is imported lazily, so ``transferkit --help`` answers without loading TensorFlow.

Example:
    >>> import transferkit
    >>> result = transferkit.run("demo", strategy="finetune")
    >>> result.metrics["test_accuracy"]
"""
import importlib

_EXPORTS = {
    "run": "transferkit.api", "RunResult": "transferkit.api", "compare": "transferkit.comparison",
    "catalog": "transferkit.catalog",
    "BACKBONES": "transferkit.backbones", "BASELINES": "transferkit.baselines",
    "STRATEGIES": "transferkit.strategies", "DATA_SOURCES": "transferkit.data.sources",
    "Splits": "transferkit.data.sources", "from_arrays": "transferkit.data.sources",
    "from_datasets": "transferkit.data.datasets",
    "load_data": "transferkit.data.sources", "TransferkitError": "transferkit.errors",
    "Recipe": "transferkit.recipes", "list_recipes": "transferkit.recipes", "load_recipe": "transferkit.recipes",
    "load": "transferkit.predict", "export": "transferkit.exporters", "lr_find": "transferkit.finder",
    "inspect_run": "transferkit.inspection", "audit_data": "transferkit.data.audit",
}
_SUBMODULES = ("explain", "serve")  # as modules: transferkit.explain.grad_cam, transferkit.serve.make_server
__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"transferkit.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
