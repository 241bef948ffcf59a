"""Training and tiling under every installed Keras backend, and data parallel over two devices.

Each case runs tests/unit/backend_run.py in a fresh process, because Keras picks its backend once,
when it is first imported.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("backend_run.py")
# the backends Tessera is tested on (PyTorch is not: tessera.backend.TESTED says why)
BACKENDS = ["tensorflow", "jax"]


def run(tmp_path, backend, *args, env=None):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} backend is not installed (see requirements-test.txt)")
    full = {**os.environ, "KERAS_BACKEND": backend, **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), *map(str, args)],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_and_tiling_work_on_every_installed_backend(tmp_path, backend):
    summary = run(tmp_path, backend)
    assert summary["backend"] == backend
    history = (tmp_path / "history.tsv").read_text().splitlines()
    assert len(history) == 3 and summary["final_loss"] < 0.1
    assert summary["tiled_shape"] == [70, 101, 3]
    assert summary["tiling_error"] < 1e-4
    assert (tmp_path / "model.keras").stat().st_size > 0


VIRTUAL = {
    # two host devices stand in for two GPUs
    "jax": ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, 0),
    "tensorflow": ({}, 2),
}


@pytest.mark.slow  # two trainings in a subprocess of its own per backend
@pytest.mark.parametrize("backend", sorted(VIRTUAL))
def test_data_parallel_training_uses_both_devices_and_matches_one(tmp_path, backend):
    env, devices = VIRTUAL[backend]
    # Plain SGD: Adam's first steps follow the sign of tiny gradients, so float-order noise
    # between one and two devices would grow into visibly different losses.
    one = run(tmp_path / "one", backend, 1, devices, "sgd", env=env)
    two = run(tmp_path / "two", backend, 2, devices, "sgd", env=env)
    assert one["replicas"] == 1 and one["weight_copies"] == 1
    assert two["replicas"] == 2 and two["weight_copies"] == 2
    assert two["device"] == "cpu:0, cpu:1"
    # the same global batches and starting weights; only the order of float sums differs
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=0.02)
    assert two["final_val_loss"] == pytest.approx(one["final_val_loss"], rel=0.02)
    assert two["final_loss"] < one["history_first_loss"]
