"""The GPU check (bench/gpu.sh) rehearsed on the CPU by the path a GPU node takes: wheels made by
bench/gpu-wheels.sh for this Python, a fresh virtual environment that has numpy, pandas, Pillow and
jax[cpu] only (the node's own packages, JAX there on CUDA) and no TensorFlow, then the check
itself on tiny images with short budgets. It needs PyPI, as CI has it."""

import json
import math
import os
import platform
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, tiny_config, tiny_images

# What the GPU node is taken to have, at the project's own pins.
NODE = {"numpy", "pandas", "pillow", "jax[cpu]"}
MiB = 2**20


def pins():
    found = {}
    for name in ("requirements.txt", "requirements-backends.txt"):
        for line in (REPO / name).read_text().splitlines():
            req = line.split("#")[0].strip()
            if "==" in req:
                found[req.split("==")[0].lower()] = req
    return [found[n] for n in sorted(NODE)]


def table(path):
    """The rows of the check's Markdown table, as dicts by column."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def number(text):
    return float(text.replace(",", ""))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A Python like the GPU node's: a fresh virtual environment without TensorFlow."""
    venv = tmp_path_factory.mktemp("node") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins()]
    subprocess.run(install, check=True, timeout=600)
    return python


@pytest.mark.slow
def test_the_gpu_check_runs_on_a_node_without_tensorflow(tmp_path, node):
    missing = subprocess.run([node, "-c", "import tensorflow"], capture_output=True)
    assert missing.returncode != 0, "the node's Python must not have TensorFlow"
    wheels = tmp_path / "wheels"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    made = subprocess.run(
        ["bash", REPO / "bench" / "gpu-wheels.sh", version, platform.machine(), wheels],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert sum(f.stat().st_size for f in wheels.iterdir()) <= 64 * MiB
    carried = {line.split("==")[0] for line in (wheels / "carried.txt").read_text().split()}
    assert {"snakemake", "keras", "scikit-image", "matplotlib", "h5py"} <= carried
    assert not carried & {"numpy", "pandas", "pillow", "jax", "jaxlib", "tensorflow"}

    overrides = tiny_config(tmp_path / "tiny.yaml", tiny_images(tmp_path / "images"))
    out = tmp_path / "out"
    # Short budgets and tiny sizes; the time limits are generous, as a shared CPU is slow.
    options = ["--out", out, "--wheels", wheels, "--overrides", overrides, "--virtual-devices"]
    options += ["--speed-presets", "dncnn", "--speed-batches", "64", "--speed-patches", "256"]
    options += ["--speed-epochs", "2", "--speed-timeout", "300", "--denoise-minutes", "0.05"]
    options += ["--workflow-timeout", "600", "--train-timeout", "300", "--deadline", "1800"]
    proc = subprocess.run(
        ["bash", REPO / "bench" / "gpu.sh", *options],
        capture_output=True,
        text=True,
        timeout=1900,
        # the node's Python, and nothing of this one's on its path
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHON": str(node)},
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    every = table(out / "gpu-check.md")
    rows = {(r["step"], r["setting"].split(",")[0]): r for r in every}

    install = rows["install", f"{len(list(wheels.glob('*.whl')))} wheels from {wheels}"]
    assert number(install["wall s"]) > 0
    assert "no GPU here" in rows["devices", "jax 0.10.2"]["note"]
    for precision in ("float32", "mixed_bfloat16"):
        speed = next(r for r in every if r["step"] == "speed" and precision in r["setting"])
        assert number(speed["patches/s"]) > 0 and number(speed["bare fit patches/s"]) > 0, speed

    workflow = rows["workflow", "config/config.yaml"]
    assert workflow["device"] == "cpu:0" and number(workflow["epochs"]) >= 1, workflow
    assert "require_gpu false" in workflow["setting"] and "no GPU" in workflow["note"]
    assert (out / "workflow" / "results" / "report" / "index.html").exists()
    summary = json.loads((out / "workflow" / "results" / "model" / "summary.json").read_text())
    assert summary["backend"] == "jax" and "tensorflow" not in summary["versions"]

    denoise = rows["denoise", "config/denoise.yaml"]
    assert number(denoise["epochs"]) >= 1 and math.isfinite(number(denoise["val PSNR dB"]))
    assert re.search(r"the noisy input: \d+\.\d\d dB", denoise["note"]), denoise
    assert rows["denoise cpu", "config/denoise.yaml"]["note"].startswith("skipped: no GPU")
    # train.gpus 2 on two virtual CPU devices: the data-parallel path of the two-GPU step
    assert rows["gpus 2", "config/config.yaml"]["device"] == "cpu:0, cpu:1"
