"""Training strategies, one registry: each takes a :class:`~transferkit.strategies.common.Context`
and returns a :class:`~transferkit.strategies.common.Trained` model with its history."""
from transferkit.strategies.common import STRATEGIES, Context, Trained
from transferkit.strategies import feature_extraction, finetune, frozen_augment, scratch  # noqa: F401  (registers)

__all__ = ["STRATEGIES", "Context", "Trained"]
