"""Training with auxiliary classifiers (GoogLeNet, Szegedy et al. 2014, section 5): classifiers on inner layers add
their losses, weighted, to the network's while it trains, and are dropped afterwards."""
import keras


class AuxiliaryClassifiers(keras.Model):
    """The model that fits a classifier with auxiliary classifiers: what ``fit`` trains, never what is saved.

    ``network``'s first output is the classifier's, the others the auxiliary classifiers'; it shares its layers with
    the classifier (the model to save), so training this model trains the classifier. In training the loss is the
    compiled loss of the first output plus ``weight`` times the same loss object (label smoothing, soft labels and
    sample weights alike) on each auxiliary output, against the same labels. Evaluating, validating and predicting
    give the first output alone, so the metrics, the validation loss early stopping watches and the predictions
    are the classifier's. Compile it with a ``keras.losses.Loss`` object.

    Example:
        >>> trainer = AuxiliaryClassifiers(keras.Model(inputs, [output, aux_4a, aux_4d]), weight=0.3)
        >>> trainer.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
        >>> trainer.fit(images, labels)   # trains keras.Model(inputs, output), the model to save
    """

    def __init__(self, network, weight, **kwargs):
        super().__init__(**{"name": f"{network.name}_training", **kwargs})
        self.network, self.auxiliary_weight = network, float(weight)
        self.built = True  # its layers are the network's, built already

    def call(self, inputs, training=False):
        """The classifier's output; in training ``(output, [auxiliary outputs])``."""
        output, *auxiliary = self.network(inputs, training=training)
        return (output, auxiliary) if training else output

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The classifier's compiled loss, plus ``weight`` times the loss of each auxiliary output in training."""
        if not isinstance(y_pred, tuple):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        output, auxiliary = y_pred
        loss = super().compute_loss(x, y, output, sample_weight, training=training)
        return loss + self.auxiliary_weight * sum(self.loss(y, aux, sample_weight) for aux in auxiliary)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics of the classifier's output alone."""
        output = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        return super().compute_metrics(x, y, output, sample_weight)
