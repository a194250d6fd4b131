"""The training loop every strategy shares: one stage runner (:func:`~transferkit.training.stage.train_stage`)
and its parts: the fused optimizer with per-layer rates, the schedules, the loss, the callbacks, the rate finder."""
