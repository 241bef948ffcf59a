"""The training recipe: hidden layers that stay alive in every preset, the Charbonnier loss, and
validation and the saved model on the moving average of the weights (train.ema)."""

import json

import numpy as np
import pandas as pd
import pytest

from tessera import models, train
from tessera.batches import CHARBONNIER_EPS, PairedLoss
from tests.conftest import DATA, TRAIN_SETTINGS, patch_dataset, sample

# A crop of a photo no test trains on, the size of the old probe's (128 x 128).
CROP = sample("astronaut.png", (200, 60, 328, 188)).astype(np.float32) / 255
# Of a hidden ReLU layer's outputs on CROP, at least this share must be above zero. A healthy
# He-initialised layer has about half; the collapsed JPEG network's last hidden layer had 2 of
# 524,288 (0.0004 %), and every layer before it under 40 % of its first layer's peak.
ALIVE = 0.05
DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    split_tsv, files = patch_dataset(tmp / "patches", max_patches=96)
    return tmp, split_tsv, files


def trained(dataset, name, task=None, **settings):
    tmp, split_tsv, files = dataset
    out = tmp / name
    summary = train.train(
        split_tsv, files, out / "model.keras", out / "history.tsv", out / "summary.json",
        tmp / f"resume-{name}", {**TRAIN_SETTINGS, "batch_size": 32, **settings}, DATA,
        log=lambda line: None, task=task,
    )  # fmt: skip
    return out, summary


def alive_shares(model):
    """{layer name: share of its outputs above zero on CROP} for each hidden ReLU layer."""
    import keras

    hidden = [
        layer
        for layer in model.layers
        if getattr(getattr(layer, "activation", None), "__name__", "") == "relu"
        or type(layer).__name__ == "ReLU"
    ]
    probe = keras.Model(model.inputs, [layer.output for layer in hidden])
    outputs = probe.predict(CROP[None], verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return {layer.name: float((np.asarray(o) > 0).mean()) for layer, o in zip(hidden, outputs)}


@pytest.mark.slow  # trains each preset for an epoch
@pytest.mark.parametrize("preset", ["compact", "dncnn", "unet", "resnet", "ffdnet"])
def test_after_a_short_training_every_hidden_layer_of_every_preset_is_alive(dataset, preset):
    # denoising: a residual network that rebuilt its clean input could rightly switch off
    out, _ = trained(dataset, preset, preset=preset, epochs=2, loss="charbonnier", task=DENOISE)
    summary = json.loads((out / "summary.json").read_text())
    model = models.load_trained(out / "model.keras", summary)
    shares = alive_shares(model)
    assert len(shares) >= 2, shares
    dead = {name: share for name, share in shares.items() if share < ALIVE}
    assert not dead, f"{preset}: layers with under {ALIVE:.0%} of outputs above zero: {dead}"


def test_a_layer_that_died_fails_the_same_check():
    # the counterpart: the check sees a dead layer (its bias pushed below every input)
    model = models.build(models.normalise({"preset": "dncnn", "depth": 4, "width": 8}))
    assert min(alive_shares(model).values()) >= ALIVE
    conv = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"][2]
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, bias - 100])
    assert min(alive_shares(model).values()) < ALIVE


def test_charbonnier_is_a_smooth_l1_counted_as_in_validation():
    rng = np.random.default_rng(0)
    answer, target = rng.random((2, 4, 8, 8, 3), dtype=np.float32)
    weights = (rng.random((4, 8, 8, 1)) < 0.3).astype(np.float32)
    error = answer.astype(np.float64) - target
    expected = np.sqrt(error**2 + CHARBONNIER_EPS**2)
    loss = PairedLoss("charbonnier")
    side_by_side = np.concatenate([answer, target], -1)
    per_patch = np.asarray(loss.call(None, side_by_side))
    assert np.allclose(per_patch, expected.mean(axis=(1, 2, 3)), rtol=1e-5)
    assert train._loss("charbonnier", answer, target) == pytest.approx(expected.mean(), rel=1e-6)
    # near zero error it is the absolute error, far from it too (a smooth L1, not L2)
    assert np.sqrt(0.5**2 + CHARBONNIER_EPS**2) == pytest.approx(0.5, rel=1e-5)
    # counted only where the task's weights say (the holes of inpainting)
    weighted = np.asarray(loss.call(None, np.concatenate([answer, target, weights], -1)))
    counted = weights.sum(axis=(1, 2, 3)) * 3
    by_hand = (expected * weights).sum(axis=(1, 2, 3)) / counted
    assert np.allclose(weighted, by_hand, rtol=1e-5)
    assert train._loss("charbonnier", answer, target, weights) == pytest.approx(
        by_hand.mean(), rel=1e-5
    )


@pytest.mark.slow  # trains twice
def test_validation_and_the_saved_model_use_the_moving_average(dataset):
    # An average with momentum this close to 1 barely leaves the weights of the first step: the
    # validation loss stands still while the weights themselves learn, and the saved model is
    # that average. Without it, the validation loss falls.
    common = {"epochs": 3, "keep": "last", "learning_rate": 0.005}
    ema_out, ema = trained(dataset, "ema", ema=0.99999, **common)
    plain_out, _ = trained(dataset, "plain", **common)
    averaged = pd.read_csv(ema_out / "history.tsv", sep="\t")
    moving = pd.read_csv(plain_out / "history.tsv", sep="\t")
    spread = lambda h: (h.val_loss.max() - h.val_loss.min()) / h.val_loss.mean()  # noqa: E731
    assert spread(averaged) < 0.01 < spread(moving), (averaged, moving)
    assert averaged.loss.iloc[-1] < averaged.loss.iloc[0]  # the raw weights did learn
    # the saved model is the average: it scores on the validation patches what validation saw,
    # not what the weights that learnt score
    ema_saved, plain_saved = (val_loss(dataset, out) for out in (ema_out, plain_out))
    assert ema_saved == pytest.approx(averaged.val_loss.iloc[-1], rel=0.05)
    assert plain_saved == pytest.approx(moving.val_loss.iloc[-1], rel=0.05)
    assert ema_saved > 1.5 * plain_saved


def val_loss(dataset, out):
    """The mean squared error of the saved model over every validation patch."""
    from tessera.batches import in_batches

    _, split_tsv, files = dataset
    split = pd.read_csv(split_tsv, sep="\t")
    val = np.concatenate([np.load(files[i]) for i in split.image[split.split == "val"]])
    summary = json.loads((out / "summary.json").read_text())
    model = models.load_trained(out / "model.keras", summary)
    return train.evaluate(model, in_batches(val, val, val, size=32), "mse")["model"]
