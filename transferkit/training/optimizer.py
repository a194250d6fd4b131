"""The optimizer every stage trains with: Keras Adam, its update fused into one kernel per variable.

Keras 3's Adam updates each variable with about eleven elementwise TensorFlow ops, each a pass over the
variable's memory; TensorFlow's ``ResourceApplyAdam`` does the same arithmetic in one kernel (also under XLA
and on GPU). For VGG16's block5 and a dense head (9 million weights) the update alone takes 6.6 ms instead of
21 ms on a 2-core CPU; inside a training step, where updates overlap the backward pass, a cached fine-tuning
step gets about 8% faster (``bench/run.py``, figure 5). The object stays a ``keras.optimizers.Adam``
with the same variables and config, so saved models and checkpoints load in plain Keras, and
``LossScaleOptimizer`` and ``tf.distribute`` wrap it as they wrap Adam.

Per-variable learning rates (discriminative rates when fine-tuning, which Keras has no option for) ride on the
same kernel: each variable's rate is the schedule's rate times its multiplier, a scalar product, no extra pass.
"""
import keras
import tensorflow as tf


def adam(learning_rate, multipliers=None, ema=0.0):
    """A ``keras.optimizers.Adam`` at ``learning_rate`` (a float or a schedule) whose dense updates run as one
    fused kernel.

    ``multipliers`` maps variable paths (``"block7_project_conv/kernel"``) to a factor on the learning rate
    (1 for the others). ``ema`` > 0 keeps an exponential moving average of the weights with that momentum
    (Keras' ``use_ema``); ``fit`` leaves the averaged weights in the model at its end.

    Example:
        >>> model.compile(optimizer=adam(1e-4, {"dense/kernel": 10.0}), loss="sparse_categorical_crossentropy")
    """
    optimizer = keras.optimizers.Adam(learning_rate, use_ema=ema > 0, ema_momentum=ema or 0.99)
    keras_step = optimizer.update_step
    multipliers = dict(multipliers or {})

    def update_step(gradient, variable, learning_rate):
        index = optimizer._get_variable_index(variable)
        if multipliers:
            learning_rate = learning_rate * multipliers.get(optimizer._trainable_variables[index].path, 1.0)
        if isinstance(gradient, tf.IndexedSlices):
            return keras_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(optimizer.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(optimizer.beta_1, dtype), tf.cast(optimizer.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(optimizer._momentums[index]), v=_handle(optimizer._velocities[index]),
            beta1_power=beta_1 ** step, beta2_power=beta_2 ** step, lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(optimizer.epsilon, dtype), grad=tf.cast(gradient, dtype))

    optimizer.update_step = update_step
    return optimizer


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (this device's copy inside a distributed update)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle
