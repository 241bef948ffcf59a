"""A registry of named, fully convolutional model presets, and measurements of a built model.

Keras is imported inside the builders so that the Snakefile can read the registry (names and
declared down-sampling) at parse time without starting a deep-learning framework.
"""

import math
from dataclasses import dataclass
from fractions import Fraction
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


# Layers that act on each pixel alone (channels only): they neither widen nor shift the reach.
_PER_PIXEL = {
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dense",
    "BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "Rescaling", "Identity",
}  # fmt: skip
_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}


@dataclass(frozen=True)
class _Reach:
    """What one pixel of a tensor depends on, along one image axis.

    The tensor's pixel q covers image pixels q*step .. q*step + step - 1 (step < 1 after
    up-sampling) and depends on image pixels q*step + lo .. q*step + step - 1 + hi.
    """

    step: Fraction = Fraction(1)
    lo: Fraction = Fraction(0)
    hi: Fraction = Fraction(0)

    def window(self, k, s, before):
        # a kernel of k taps with stride s, its first tap `before` pixels before the output pixel
        return _Reach(
            self.step * s, self.lo - before * self.step, self.hi + (k - before - s) * self.step
        )

    def transposed(self, k, s, crop):
        step = self.step / s
        return _Reach(
            step, self.lo + (crop - k + 1) * step, self.hi + crop * step + self.step - step
        )

    def shifted(self, by):
        return _Reach(self.step, self.lo + by * self.step, self.hi + by * self.step)


def _same_before(k, s):
    # TensorFlow-style "same" padding on a side that is a multiple of the stride (size_multiple
    # makes it so): the smaller half of the padding goes first.
    return max(k - s, 0) // 2


def _layer_reach(layer, reach, axis):
    """The reach after one layer, from its configuration; None for a layer this cannot read."""
    kind = type(layer).__name__
    if kind in _PER_PIXEL:
        axis_of = layer.get_config().get("axis", -1)
        return reach if axis_of in (-1, 3, [-1], [3]) else None
    c = layer.get_config()
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D"):
        k = c.get("kernel_size", c.get("pool_size"))[axis]
        s = (c.get("strides") or c.get("pool_size"))[axis]
        d = c.get("dilation_rate", (1, 1))[axis]
        span = (k - 1) * d + 1
        before = _same_before(span, s) if c["padding"] == "same" else 0
        return reach.window(span, s, before) if c["padding"] in ("same", "valid") else None
    if kind == "Conv2DTranspose":
        k, s = c["kernel_size"][axis], c["strides"][axis]
        if c.get("dilation_rate", (1, 1))[axis] != 1 or c.get("output_padding") is not None:
            return None
        return reach.transposed(k, s, _same_before(k, s) if c["padding"] == "same" else 0)
    if kind == "Cropping2D":
        return reach.shifted(c["cropping"][axis][0])
    if kind == "ZeroPadding2D":
        return reach.shifted(-c["padding"][axis][0])
    if kind == "UpSampling2D" and c["interpolation"] == "nearest":
        s = c["size"][axis]
        return _Reach(
            reach.step / s, reach.lo - (s - 1) * reach.step / s, reach.hi + reach.step * (s - 1) / s
        )
    return None


def layer_radius(model):
    """The receptive radius read from the layers' configuration (kernel sizes, strides, dilations,
    padding, cropping) by walking the model's graph: exact integer arithmetic, so no kernel
    library's rounding can change it. None when the model has a layer this does not know."""

    def walk(tensor, axis, seen):
        if id(tensor) in seen:
            return seen[id(tensor)]
        layer, node_index, _ = tensor._keras_history
        inputs = layer._inbound_nodes[node_index].input_tensors
        if not inputs:  # the model's input
            result = _Reach()
        else:
            reaches = [walk(t, axis, seen) for t in inputs]
            if None in reaches:
                result = None
            elif len(reaches) > 1:
                steps = {r.step for r in reaches}
                ok = type(layer).__name__ in _MERGES and len(steps) == 1
                lo, hi = min(r.lo for r in reaches), max(r.hi for r in reaches)
                result = _Reach(steps.pop(), lo, hi) if ok else None
            else:
                result = _layer_reach(layer, reaches[0], axis)
        seen[id(tensor)] = result
        return result

    radius = 0
    for axis in (0, 1):
        reach = walk(model.outputs[0], axis, {})
        if reach is None or reach.step != 1 or len(model.outputs) != 1:
            return None
        radius = max(radius, math.ceil(-reach.lo), math.ceil(reach.hi))
    return radius


# An output pixel counts as reached when the impulse changes it by more than this share of the
# output's scale. Kernel libraries that sum in another order (oneDNN on CPUs with and without
# AVX-512, GPUs) change every output by a few units in float32's last place: 3.4e-7 of the
# output's scale was seen beyond compact's reach, while at its edge an impulse still changes the
# output by 7.4e-4 of it (dncnn) to 4e-2 (compact), with the weights of seed 0:
# `python bench/radius.py` prints both. 1e-5 sits about thirty times above the one and seventy
# times below the other.
PROBE_RTOL = 1e-5
PROBE_MAX_SIDE = 256  # probes of 256 x 256, a few at a time: a few hundred MB at most


def probe_radius(model, trials=3, seed=0, max_side=PROBE_MAX_SIDE, rtol=PROBE_RTOL):
    """The receptive radius measured by impulse responses: for models whose layers
    layer_radius cannot read, and as a check of it.

    Each probe compares the model's output on a random image with the output after changing one
    pixel; the radius is the furthest output change seen over several backgrounds and over every
    impulse position within one size-multiple cell (a strided network's reach depends on it).
    """
    m = size_multiple(model)
    rng = np.random.default_rng(seed)
    offsets = [(dy, dx) for dy in range(m) for dx in range(m)]
    size = 32
    while size <= max_side:
        size = -(-size // m) * m
        c = size // 2
        base = rng.random((trials, size, size, 3), dtype=np.float32)
        out_base = np.asarray(model.predict(base, verbose=0, batch_size=trials))
        floor = rtol * max(float(np.abs(out_base).max()), 1e-12)
        radius = 0
        for t in range(trials):
            # a few probes per call, so memory stays that of a few probe-sized images
            for start in range(0, len(offsets), 8):
                chunk = offsets[start : start + 8]
                probes = np.repeat(base[t : t + 1], len(chunk), axis=0)
                for k, (dy, dx) in enumerate(chunk):
                    probes[k, c + dy, c + dx, :] += 1.0
                out = np.asarray(model.predict_on_batch(probes))
                changed = np.abs(out - out_base[t]).max(axis=3) > floor
                for (dy, dx), mask in zip(chunk, changed):
                    ys, xs = np.nonzero(mask)
                    if len(ys):
                        reach = max(np.abs(ys - c - dy).max(), np.abs(xs - c - dx).max())
                        radius = max(radius, int(reach))
        if radius < c - m:  # the response stayed inside the probe: measured, not cut off
            return radius
        size *= 2
    raise TesseraError(
        f"model '{model.name}': its receptive radius could not be measured within "
        f"{max_side}x{max_side} probes: an impulse still changes the output at their edge, so "
        f"the model reaches further than {max_side // 2 - 1} pixels, or is not translation-invariant"
    )


def receptive_radius(model):
    """How far (in pixels) an input pixel can reach in the output: from the layers' configuration
    where every layer is known, else measured."""
    radius = layer_radius(model)
    return probe_radius(model) if radius is None else radius


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


# The legacy HDF5 format keeps a model's layers as config to deserialise, and crafted .h5 files
# have run code through it: it is never read.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def refuse_hdf5(model_path):
    """Stop with one line if model_path is an HDF5 (.h5) model, whatever its name."""
    try:
        with open(model_path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError:
        return  # the caller's own checks name a missing or unreadable file
    if head == HDF5_SIGNATURE:
        raise TesseraError(
            f"model '{model_path}' is an HDF5 (.h5) file: Tessera reads only the .keras files "
            "its training writes (HDF5 model files can carry code that runs when they are loaded)"
        )


def load_trained(model_path, summary):
    """The trained network: built from summary.json (its "model" spec, else the preset name of
    older summaries) under the precision it trained with, then given the weights of the .keras
    archive at model_path.

    Only the archive's weights are read (Keras' load_weights on a .keras file opens
    model.weights.h5 and never deserialises the archive's config.json), so a crafted config cannot
    run code. A network from the user's own file runs that file's code, as training did.
    """
    import keras

    refuse_hdf5(model_path)
    if not str(model_path).endswith(".keras"):
        raise TesseraError(f"model '{model_path}' is not a .keras file (its name must end .keras)")
    spec = summary.get("model") or summary.get("preset")
    if not spec:
        raise TesseraError(
            f"the summary of model '{model_path}' names no network ('model' or 'preset')"
        )
    # A model trained in mixed_bfloat16 computes in bfloat16 when loaded whole; build it so.
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(summary.get("precision") or "float32")
    try:
        net = build(spec)
    finally:
        keras.config.set_dtype_policy(before)
    try:
        net.load_weights(model_path)
    except Exception as e:
        # Keras' message goes on with every value of the first mismatched variable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". Example")[0]
        raise TesseraError(
            f"model '{model_path}': its weights do not fit the network its summary names "
            f"({spec!r}): {first[:300]}"
        ) from None
    return net
