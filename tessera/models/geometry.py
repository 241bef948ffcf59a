"""What a built model is, read from it rather than typed in: how its output side follows its input
side (Geometry), and how far an input pixel reaches in its output (the receptive radius), from
the layers' configuration or measured by impulses."""

import math
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tessera import TesseraError
from tessera.models.layers import fill_reach


@dataclass(frozen=True)
class Geometry:
    """How a model's output side follows its input side, for input sides that are multiples of
    `multiple`: (side - 2 * border) * scale. A same-size model has scale 1 and border 0; valid
    convolutions give a border ("32 in, 24 out"); up- and down-sampling give another scale."""

    multiple: int
    scale: Fraction = Fraction(1)
    border: int = 0


def _output_sides(model, h, w):
    try:
        out = tuple(model.compute_output_shape((1, h, w, 3)))[1:3]
    except ValueError:  # skip connections refuse sizes that do not halve evenly
        return None
    return out if all(isinstance(o, int) and o > 0 for o in out) else None


def _fit(points):
    """(scale, border) of the line output = (side - 2 * border) * scale through every (side,
    output) point, or None when there is no such line with a whole, non-negative border."""
    (s0, o0), (s1, o1) = points[0], points[-1]
    scale = Fraction(o1 - o0, s1 - s0)
    if scale <= 0 or any(o - o0 != scale * (s - s0) for s, o in points):
        return None
    border = (s0 - o0 / scale) / 2
    return (scale, int(border)) if border.denominator == 1 and border >= 0 else None


def geometry(model, largest=64):
    """The model's Geometry, from the output shapes it gives (no weights are run): the smallest
    power-of-two multiple for which every input side gives an output side on one line."""
    m = 1
    while m <= largest:
        # sides of every remainder modulo 2, 4 and 8 multiples of m, so that a stride that does
        # not divide the side shows up; long enough for borders of over a hundred pixels
        ks = [max(8, 256 // m) + j for j in (0, 1, 2, 3, 5, 7)]
        points, ok = [], True
        for a, b in zip(ks, ks[1:] + ks[:1]):
            out = _output_sides(model, m * a, m * b)
            if out is None:
                ok = False
                break
            points += [(m * a, out[0]), (m * b, out[1])]
        fit = _fit(sorted(set(points))) if ok else None
        if fit is not None:
            return Geometry(m, *fit)
        m *= 2
    raise TesseraError(
        f"model '{model.name}': its output side is neither a fixed multiple of its input side nor "
        f"the input side less a fixed border, for input sides that are multiples of any power of "
        f"two up to {largest}"
    )


# Layers that act on each pixel alone (channels only): they neither widen nor shift the reach.
_PER_PIXEL = {
    "InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dense",
    "BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "Rescaling", "Identity", "HoleMask",
}  # fmt: skip
_MERGES = {
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "KeepKnown",
}


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


def _bicubic_reach(reach, factor):
    """After a bicubic enlargement: output pixel o is made of input pixels floor(x) - 1 ..
    floor(x) + 2 around x = (o + 0.5) / factor - 0.5 (tessera.models.layers.Bicubic)."""
    step = reach.step / factor
    lo = hi = None
    for o in range(factor):  # the pattern repeats every factor output pixels
        x = math.floor(Fraction(2 * o + 1, 2 * factor) - Fraction(1, 2))
        first = (x - 1) * reach.step + reach.lo - o * step
        last = (x + 2) * reach.step + reach.step - 1 + reach.hi - (o * step + step - 1)
        lo = first if lo is None else min(lo, first)
        hi = last if hi is None else max(hi, last)
    return _Reach(step, lo, hi)


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
    if kind == "FillHoles":
        far = fill_reach(c.get("steps", 0))
        return reach.window(2 * far + 1, 1, far)
    if kind == "Bicubic":
        return _bicubic_reach(reach, c["factor"])
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


def layer_radius(model, geo=None):
    """The receptive radius read from the layers' configuration (kernel sizes, strides, dilations,
    padding, cropping) by walking the model's graph: exact integer arithmetic, so no kernel
    library's rounding can change it. None when the model has a layer this does not know.

    In input pixels, around what each output pixel stands for: output pixel q of a model of
    Geometry (scale, border) stands for input pixels border + q / scale onwards (1 / scale of
    them), so a stack of valid 3x3 convolutions of depth d has radius d, not 2d."""
    geo = geo or geometry(model)

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
        if reach is None or reach.step != 1 / geo.scale or len(model.outputs) != 1:
            return None
        radius = max(radius, math.ceil(geo.border - reach.lo), math.ceil(reach.hi - geo.border))
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


@contextmanager
def woken(model, seed=0):
    """Within the block, each layer whose weights are all zero has small random ones: a residual
    network whose last layer starts at zero is the identity, whose reach no impulse shows; the
    weights training gives it reach as its layers say. Restored afterwards."""
    rng = np.random.default_rng([seed, 11])
    asleep = [
        (layer, weights)
        for layer in model.layers
        if layer.trainable
        and (weights := layer.get_weights())
        and not any(np.any(w) for w in weights)
    ]
    for layer, weights in asleep:
        layer.set_weights([rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in weights])
    try:
        yield
    finally:
        for layer, weights in asleep:
            layer.set_weights(weights)


def probe_radius(model, trials=3, seed=0, max_side=PROBE_MAX_SIDE, rtol=PROBE_RTOL, geo=None):
    """The receptive radius measured by impulse responses: for models whose layers
    layer_radius cannot read, and as a check of it.

    Each probe compares the model's output on a random image with the output after changing one
    pixel; the radius is the furthest output change seen over several backgrounds and over every
    impulse position within one size-multiple cell (a strided network's reach depends on it). It
    is in input pixels, from the impulse to the input pixels each changed output pixel stands
    for (see layer_radius), so outputs of another size or with a border measure alike.
    """
    with woken(model, seed):
        return _probe_radius(model, trials, seed, max_side, rtol, geo)


def _probe_radius(model, trials, seed, max_side, rtol, geo):
    geo = geo or geometry(model)
    m, b, step = geo.multiple, geo.border, 1 / geo.scale
    rng = np.random.default_rng(seed)
    offsets = [(dy, dx) for dy in range(m) for dx in range(m)]
    size = 32
    while size <= max_side:
        size = -(-max(size, 2 * b + 4 * m) // m) * m
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
                        # from the impulse p to the first and last input pixel that the
                        # furthest changed output rows and columns stand for (exact fractions)
                        reach = max(
                            max(
                                b + int(qs.max()) * step - p,
                                p - (b + int(qs.min()) * step + step - 1),
                            )
                            for qs, p in ((ys, c + dy), (xs, c + dx))
                        )
                        radius = max(radius, math.ceil(reach))
        # the response stayed inside the probe's output: measured, not cut off
        if radius < c - b - m - (math.ceil(step) - 1):
            return radius
        size *= 2
    raise TesseraError(
        f"model '{model.name}': its receptive radius could not be measured within "
        f"{max_side}x{max_side} probes: an impulse still changes the output at their edge, so "
        f"the model reaches further than {max_side // 2 - 1} pixels, or is not translation-invariant"
    )


def receptive_radius(model, geo=None):
    """How far (in input pixels) an input pixel can reach in the output: from the layers'
    configuration where every layer is known, else measured."""
    geo = geo or geometry(model)
    radius = layer_radius(model, geo)
    return probe_radius(model, geo=geo) if radius is None else radius


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
    geo = geometry(model)
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {
        "params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "size_multiple": geo.multiple,
        "receptive_radius": receptive_radius(model, geo),
        # output side = (input side - 2 x output_border) x output_scale
        "output_scale": int(geo.scale) if geo.scale.denominator == 1 else str(geo.scale),
        "output_border": geo.border,
        "latent_values_per_pixel": latent_values_per_pixel(model),
    }


# The legacy HDF5 format keeps a model's layers as config to deserialise, and crafted .h5 files
# have run code through it: it is never read.
