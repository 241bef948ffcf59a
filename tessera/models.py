"""A registry of named, fully convolutional model presets, and measurements of a built model.

Keras is imported inside the builders so that the Snakefile can read the registry (names and
declared down-sampling) at parse time without starting a deep-learning framework.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tessera import TesseraError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    downsamplings: (
        int  # declared for checks before any job runs; tests compare it to the built model
    )
    build: Callable


def _seed():
    # The 32x32 network of the blog post the project grew from, layer for layer (48,579 parameters,
    # 160 of them non-trainable). Its max pooling has stride 1, so it never down-samples.
    from keras import Input, Sequential, layers

    return Sequential(
        [
            Input((None, None, 3)),
            layers.Conv2D(16, 4, padding="same", activation="relu"),
            layers.Conv2D(16, 2, padding="same", activation="relu"),
            layers.MaxPooling2D(2, strides=1, padding="same"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(16, 2, padding="same", activation="relu"),
            layers.Dropout(0.2),
            layers.BatchNormalization(),
            layers.Conv2DTranspose(32, 4, activation="relu"),
            layers.Cropping2D(1),
            layers.BatchNormalization(),
            layers.Conv2DTranspose(32, 4, activation="relu"),
            layers.Cropping2D(2),
            layers.BatchNormalization(),
            layers.Dense(512, activation="relu"),
            layers.Dense(3),
        ],
        name="seed",
    )


def _compact(width=32, latent=12):
    # Two stride-2 down-samplings to a 12-channel latent at 1/4 of the resolution (a quarter of the
    # input's values): a real bottleneck, and about five times the seed network's speed on a CPU.
    from keras import Input, Model, layers

    x = inp = Input((None, None, 3))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(latent, 1, name="latent")(x)
    x = layers.Conv2DTranspose(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    return Model(inp, layers.Conv2D(3, 1)(x), name="compact")


def _dncnn(depth=8, width=32):
    # For denoising: a full-resolution stack that predicts the noise, which is then subtracted
    # from the input (DnCNN's residual learning); the identity is its starting point, so it never
    # has to learn to copy the image.
    from keras import Input, Model, layers

    x = inp = Input((None, None, 3))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    for _ in range(depth - 2):
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    # The noise estimate and the subtraction stay in float32 under a mixed precision policy, so
    # the clean image is not rounded to bfloat16's 8 bits of mantissa.
    residual = layers.Conv2D(3, 3, padding="same", name="noise", dtype="float32")(x)
    return Model(inp, layers.Subtract(dtype="float32")([inp, residual]), name="dncnn")


PRESETS = {
    p.name: p
    for p in [
        Preset(
            "compact",
            "bottleneck autoencoder, 12-channel latent at 1/4 size (default)",
            2,
            _compact,
        ),
        Preset("dncnn", "residual denoiser: 8 full-resolution layers predict the noise", 0, _dncnn),
        Preset("seed", "the blog post's 32x32 network, layer for layer", 0, _seed),
    ]
}
DEFAULT_PRESET = "compact"


def get_preset(name):
    if name not in PRESETS:
        raise TesseraError(
            f"model.preset: unknown preset '{name}'; choose one of: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def declared_size_multiple(name):
    return 2 ** get_preset(name).downsamplings


def build(name):
    return get_preset(name).build()


def size_multiple(model, largest=64):
    """The smallest power of two m such that inputs whose sides are multiples of m come out the same size."""

    def same_size(s):
        try:
            return tuple(model.compute_output_shape((1, s, s, 3)))[1:3] == (s, s)
        except ValueError:  # skip connections refuse sizes that do not halve evenly
            return False

    m = 1
    while m <= largest:
        if all(same_size(m * k) for k in (3, 5, 7)):
            return m
        m *= 2
    raise TesseraError(
        f"model '{model.name}' does not give same-size outputs for any size multiple"
    )


def receptive_radius(model, trials=3, seed=0):
    """How far (in pixels) an input pixel can reach in the output, measured by impulse responses.

    Each probe compares the model's output on a random image with the output after changing one
    pixel; the radius is the furthest output change seen over several backgrounds and over every
    impulse position within one size-multiple cell (a strided network's reach depends on it).
    """
    m = size_multiple(model)
    rng = np.random.default_rng(seed)
    size = 32
    while True:
        size = -(-size // m) * m
        c = size // 2
        base = rng.random((trials, size, size, 3), dtype=np.float32)
        offsets = [(dy, dx) for dy in range(m) for dx in range(m)]
        probes = np.repeat(base, len(offsets), axis=0)
        centres = []
        for t in range(trials):
            for k, (dy, dx) in enumerate(offsets):
                y, x = c + dy, c + dx
                probes[t * len(offsets) + k, y, x, :] += 1.0
                centres.append((y, x))
        out_base = np.asarray(model.predict(base, verbose=0, batch_size=8))
        out = np.asarray(model.predict(probes, verbose=0, batch_size=8))
        changed = np.abs(out - np.repeat(out_base, len(offsets), axis=0)).max(axis=3) > 0
        radius = 0
        for (y, x), mask in zip(centres, changed):
            ys, xs = np.nonzero(mask)
            if len(ys):
                radius = max(radius, int(np.abs(ys - y).max()), int(np.abs(xs - x).max()))
        if radius < c - m:  # the response stayed inside the probe: measured, not cut off
            return radius
        size *= 2


def latent_values_per_pixel(model, side=64):
    """How many numbers the layer named "latent" keeps per input pixel (None without one)."""
    names = [layer.name for layer in model.layers]
    if "latent" not in names:
        return None
    from keras import Model

    probe = Model(model.inputs, model.get_layer("latent").output)
    shape = probe.compute_output_shape((1, side, side, 3))
    return float(np.prod(shape[1:])) / (side * side)


def describe(model):
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {
        "params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "size_multiple": size_multiple(model),
        "receptive_radius": receptive_radius(model),
        "latent_values_per_pixel": latent_values_per_pixel(model),
    }
