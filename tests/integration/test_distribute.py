"""tf.distribute on a CPU split into two logical devices (in a subprocess: devices are configured before TF starts)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
if sys.argv[2] == "mirrored":
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import transferkit

sys.path.insert(0, sys.argv[4])
from conftest import stripe_images

data = {"train": stripe_images(96, seed=1), "val": stripe_images(32, seed=2), "test": stripe_images(64, seed=3)}
pinned = ["image_size=32", "base_blocks=null", "data.per_class=null", "head.units=16", "head.pooling=flatten",
          "batch_size=8", "finetune.unfreeze_blocks=1", f"distribute={sys.argv[2]}"]
report = []
for strategy, more in json.loads(sys.argv[3]):
    result = transferkit.run("demo", strategy=strategy, data=data, class_names=["horizontal", "vertical"],
                             out=sys.argv[1], overrides=pinned + more, verbose=0)
    reloaded = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    images = data["test"][0][:8].astype("float32")
    same = np.allclose(reloaded.predict(images, verbose=0), result.model.predict(images, verbose=0), atol=1e-5)
    report.append({k: result.metrics.get(k) for k in ("strategy", "test_accuracy", "replicas", "global_batch_size",
                                                      "boundary_cache")} | {"reload_same": bool(same)})
print("REPORT " + json.dumps(report))
"""


def _run(tmp_path, setting, runs, env_extra=None, timeout=300):
    env = {**os.environ, "TRANSFERKIT_CACHE": str(tmp_path / "cache"), "TRANSFERKIT_OFFLINE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "runs"), setting, json.dumps(runs),
                             str(TESTS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("REPORT "))[7:])


def test_mirrored_on_two_logical_cpus(tmp_path):
    runs = [["finetune", ["finetune.augment=false", "finetune.head_epochs=4", "finetune.epochs=1"]],
            ["frozen_augment", ["augment.rotation=0", "augment.shear=0", "augment.zoom=0", "augment.width_shift=0",
                                "augment.height_shift=0", "augment.flip=horizontal", "frozen_augment.epochs=4"]]]
    report = _report(_run(tmp_path, "mirrored", runs))
    for row in report:
        assert row["replicas"] == 2 and row["global_batch_size"] == 16, row
        assert row["test_accuracy"] >= 0.75 and row["reload_same"], row
    assert report[0]["boundary_cache"] == "block4_pool"
