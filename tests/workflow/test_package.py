"""Tessera installed as a package, used outside the clone: `pip install` into a fresh virtual
environment, `tessera export` on a dncnn denoiser the workflow trained, the ONNX file run by
onnxruntime as Keras runs the model, the model card's snippets run where the workflow ran; and
`snakemake export` and the card for every variant."""

import os
import re
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, sample, snakemake, tiny_config, tiny_images
from tests.unit.test_requirements import file_pins, pins
from tests.workflow.test_rerun import planned, rules

# The files of the clone that an install reads, without the outputs of runs and builds.
NOT_SOURCE = (".git", "results", "logs", ".snakemake", "__pycache__", "build", "*.egg-info")
# onnxruntime's kernels against Keras' (oneDNN): up to about 1e-4 apart, so 1e-3, a quarter of
# an 8-bit step (tests/unit/test_export.py says why)
ATOL = 1e-3


def test_the_package_pins_what_requirements_txt_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert pins(project["dependencies"]) == file_pins("requirements.txt")
    assert project["scripts"] == {"tessera": "tessera.__main__:main"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with tessera installed from a copy of the clone. It sees the
    machine's packages (--system-site-packages), so that TensorFlow is not installed again; the
    package's own files come from the install alone."""
    root = tmp_path_factory.mktemp("package")
    clone = root / "clone"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(install + [str(clone)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(clone)  # nothing may be read from the clone any more
    return venv


def outside(venv, args, cwd, timeout=600):
    """A command of the virtual environment, run in cwd with nothing pointing at the clone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    """A dncnn denoiser trained by the workflow, its card and its exports (`snakemake export`)."""
    work = tmp_path_factory.mktemp("denoiser")
    config = tiny_config(
        work / "tiny.yaml", tiny_images(work / "photos"),
        model={"preset": "dncnn"}, task={"kind": "denoise", "sigma": 25},
    )  # fmt: skip
    snakemake(work, "all", "export", "--configfile", str(config))
    return work


@pytest.mark.slow  # runs Snakemake and installs the package
def test_installed_tessera_exports_and_the_onnx_file_restores_as_keras(
    installed, denoiser, tmp_path
):
    model = denoiser / "results" / "model"
    located = outside(
        installed, ["python", "-c", "import tessera; print(tessera.__file__)"], tmp_path
    )
    assert located.strip().startswith(str(installed))
    said = outside(installed, ["tessera", "export", str(model), "dncnn.onnx"], tmp_path)
    assert "wrote dncnn.onnx (onnx)" in said and "It takes any height and width" in said
    noisy = sample("chelsea.png", (100, 60, 223, 137))  # 123 x 77
    np.save(tmp_path / "noisy.npy", noisy)
    # plain Keras: the dncnn has standard layers only, and needs no tessera to load
    script = (
        "import sys, keras, numpy as np, onnxruntime\n"
        "x = np.load('noisy.npy')[None].astype(np.float32) / 255\n"
        f"net = keras.saving.load_model({str(model / 'model.keras')!r})\n"
        "session = onnxruntime.InferenceSession('dncnn.onnx')\n"
        "np.save('keras.npy', net.predict_on_batch(x))\n"
        "np.save('onnx.npy', session.run(None, {'image': x})[0])\n"
        "assert 'tessera' not in sys.modules\n"
    )
    outside(installed, ["python", "-c", script], tmp_path)
    keras_out, onnx_out = np.load(tmp_path / "keras.npy"), np.load(tmp_path / "onnx.npy")
    assert onnx_out.shape == keras_out.shape == (1, 77, 123, 3)
    np.testing.assert_allclose(onnx_out, keras_out, atol=ATOL)
    # the noise estimate is no longer zero: the two outputs compared are the network's own
    assert np.abs(keras_out - np.load(tmp_path / "noisy.npy") / 255).max() > 1e-3


@pytest.mark.slow
def test_the_cards_snippets_run_where_the_workflow_ran(installed, denoiser):
    card = (denoiser / "results" / "model" / "MODEL.md").read_text()
    assert card.startswith("# dncnn: denoise\n") and "| non-local means |" in card
    noisy = sample("chelsea.png", (100, 60, 223, 137))
    Image.fromarray(noisy).save(denoiser / "photo.png")
    restored = {}
    for code in re.findall(r"```python\n(.*?)```", card, re.S):
        outside(installed, ["python", "-c", code], denoiser)
        if (denoiser / "restored.png").exists():
            restored[len(restored)] = np.asarray(Image.open(denoiser / "restored.png"))
            (denoiser / "restored.png").unlink()
    by_api, by_onnx = restored[0], restored[1]  # the API's snippet, then onnxruntime's
    assert by_api.shape == by_onnx.shape == noisy.shape
    # tiles against one pass over the padded image: float rounding, at most one 8-bit step
    assert np.abs(by_api.astype(int) - by_onnx.astype(int)).max() <= 1
    assert np.abs(by_api.astype(int) - noisy.astype(int)).max() > 0


@pytest.mark.slow
def test_snakemake_export_and_the_cards_cover_every_variant(tmp_path):
    variants = {"slow": {"train": {"learning_rate": 0.001}}, "fast": {}}
    config = tiny_config(
        tmp_path / "variants.yaml", tiny_images(tmp_path / "photos"), variants=variants
    )
    exports = snakemake(tmp_path, "-n", "export", "--configfile", str(config))
    assert rules(planned(exports))["export_model"] == 2
    text = exports.stdout + exports.stderr
    for name in variants:
        for ext in ("onnx", "tflite", "savedmodel"):
            assert f"results/{name}/model/model.{ext}" in text
    every = snakemake(tmp_path, "-n", "--configfile", str(config))
    assert rules(planned(every))["card"] == 2
    assert "export_model" not in rules(planned(every))  # not part of rule all
