"""Data: sources (embedded sample, arrays, image folders, tfds), the tf.data pipeline and augmentation."""
from transferkit.data import folder, tfds_source  # noqa: F401  (register their data sources)
