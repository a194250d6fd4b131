"""tf.distribute in subprocesses (devices are configured before TF starts): MirroredStrategy on a CPU split into
two logical devices, and MultiWorkerMirroredStrategy with two worker processes talking over loopback."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

import transferkit.layers  # noqa: F401  (registers the layers that model.keras holds)

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
    result = transferkit.run("demo_hed", strategy=strategy, data=data, class_names=["horizontal", "vertical"],
                             out=sys.argv[1], overrides=pinned + more, verbose=0)
    reloaded = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    images = data["test"][0][:8].astype("float32")
    same = np.allclose(reloaded.predict(images, verbose=0), result.model.predict(images, verbose=0), atol=1e-5)
    report.append({k: result.metrics.get(k) for k in ("strategy", "test_accuracy", "replicas", "global_batch_size",
                                                      "boundary_cache")} | {"reload_same": bool(same),
                                                                            "run_dir": str(result.run_dir)})
print("REPORT " + json.dumps(report))
"""


def _run(folder, setting, runs, env_extra=None):
    env = {**os.environ, "TRANSFERKIT_CACHE": str(folder / "cache"), "TRANSFERKIT_OFFLINE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder / "runs"), setting, json.dumps(runs),
                             str(TESTS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("REPORT "))[7:])


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_mirrored_on_two_logical_cpus(tmp_path):
    runs = [["finetune", ["finetune.augment=false", "finetune.head_epochs=4", "finetune.epochs=1"]],
            ["frozen_augment", ["augment.rotation=0", "augment.shear=0", "augment.zoom=0", "augment.width_shift=0",
                                "augment.height_shift=0", "augment.flip=horizontal", "frozen_augment.epochs=4"]]]
    report = _report(_run(tmp_path, "mirrored", runs))
    for row in report:
        assert row["replicas"] == 2 and row["global_batch_size"] == 16, row
        assert row["test_accuracy"] >= 0.75 and row["reload_same"], row
    assert report[0]["boundary_cache"] == "block4_pool"


def test_multiworker_with_two_worker_processes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    runs = [["finetune", ["finetune.augment=false", "finetune.head_epochs=4", "finetune.epochs=1"]]]
    processes = [_run(tmp_path / f"worker{index}", "multiworker", runs, {"TF_CONFIG": json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}) for index in range(2)]
    try:
        reports = [_report(process, timeout=240)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for row in reports:
        assert row["replicas"] == 2 and row["global_batch_size"] == 16, row
        assert row["reload_same"] and row["boundary_cache"] == "block4_pool", row
    assert reports[0]["test_accuracy"] >= 0.75, reports[0]
    # the workers all-reduced their gradients, so every trained weight is the same on both
    models = [keras.models.load_model(Path(row["run_dir"]) / "model.keras", safe_mode=True) for row in reports]
    trained = [[w for w in m.trainable_weights if "block5" in w.path or "head" in w.path] for m in models]
    assert len(trained[0]) > 4
    for a, b in zip(*trained):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=a.path)
