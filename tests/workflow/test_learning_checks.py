"""The learning checks of each task in real workflow runs on four small photographs, each with a
counterpart that must fail the same check, and each trained with another kernel library than the
default where a user's machine may have one. Each run makes only what the check reads
(test_end_to_end's run checks every output)."""

import importlib.util
import json

import pytest

from tests.workflow.test_end_to_end import learning_failures, workflow_run

DENOISE = {"task": {"kind": "denoise", "sigma": 25}, "model": {"preset": "dncnn"}}
# JPEG at qualities 2 to 6: blocks that a network starts to learn to smooth in seconds of training
# (measured: +0.25 dB over the JPEG input on the held-out photo; total-variation smoothing gains
# 0.5). The dncnn preset starts as the identity (its noise layer starts at zero): untrained, it
# gives the input back, so any margin above it is learned (learning_failures asks 0.1 dB).
# (The restore and paired checks compare with the input as the denoise check does: the
# counterpart of all three is test_a_model_that_moves_its_input_fails_the_denoising_check.)
RESTORE = {
    "task": {"kind": "restore", "degradations": [{"kind": "jpeg", "quality": [2, 6]}]},
    "model": {"preset": "dncnn"},
}
# The counterpart that must fail: a learning rate of 0 leaves the starting weights, so one epoch
# gives the same model as ten, for a tenth of the training time.
UNTRAINED = {"learning_rate": 0, "epochs": 1}


def test_an_untrained_model_fails_the_learning_check(tmp_path_factory):
    work, images, _ = workflow_run(
        tmp_path_factory, "untrained", checked_only=True, train=UNTRAINED
    )
    failures = learning_failures(work, images)
    assert any("mean colour" in f and "validation PSNR" in f for f in failures), failures
    assert any("own mean colour" in f for f in failures), failures  # the model's own flag


# Kernel libraries sum in other orders than the default one (TensorFlow with oneDNN): denoising is
# trained with JAX's (XLA), as test_end_to_end's run is with TensorFlow's own (Eigen).
XLA = ("jax", {"KERAS_BACKEND": "jax"})


def test_denoising_beats_the_noisy_input_with_xla_kernels(tmp_path_factory):
    module, env = XLA
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (requirements-test.txt installs it)")
    work, images, _ = workflow_run(tmp_path_factory, "denoise", env, checked_only=True, **DENOISE)
    assert learning_failures(work, images) == []
    summary = json.loads((work / "results" / "model" / "summary.json").read_text())
    assert summary["backend"] == module


# The counterpart of the denoise, restore and paired checks, which all compare the model with its
# input: a network that gives its input back moved by one pixel, untrained. It scores below the
# noisy input, so the check must fail it; a check that compared the output with itself, or the
# input with the input, would pass it. (An untrained dncnn is the identity: it scores exactly its
# input, and a check that failed it would pass by construction.)
SHIFTED = """
import keras
from keras import layers


def build():
    inp = keras.Input((None, None, 3))
    # the input one pixel to the right, its first column repeated
    moved = layers.Concatenate(axis=2)([inp[:, :, :1, :], inp[:, :, :-1, :]])
    # a weight for the optimizer to hold, starting (and, untrained, staying) at zero
    zero = layers.Conv2D(3, 1, kernel_initializer="zeros")(inp)
    return keras.Model(inp, layers.Add()([moved, zero]))
"""


def test_a_model_that_moves_its_input_fails_the_denoising_check(tmp_path_factory):
    nets = tmp_path_factory.mktemp("nets")
    (nets / "shifted.py").write_text(SHIFTED)
    model = {"model": {"file": str(nets / "shifted.py")}}
    work, images, _ = workflow_run(
        tmp_path_factory,
        "denoise_shifted",
        checked_only=True,
        train=UNTRAINED,
        **{**DENOISE, **model},
    )
    failures = learning_failures(work, images)
    assert any("noisy input" in f and "validation PSNR" in f for f in failures), failures
    assert any("no better than the noisy input" in f for f in failures), failures  # its flag


def test_restoring_jpeg_beats_the_jpeg_input(tmp_path_factory):
    work, images, _ = workflow_run(tmp_path_factory, "restore", checked_only=True, **RESTORE)
    assert learning_failures(work, images) == []


PAIRED = {"task": {"kind": "paired"}, "model": {"preset": "dncnn"}}


def test_learning_from_pairs_beats_the_damaged_input(tmp_path_factory):
    work, images, _ = workflow_run(tmp_path_factory, "paired", checked_only=True, **PAIRED)
    assert learning_failures(work, images) == []
