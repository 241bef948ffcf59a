"""Tessera's own Keras layers, registered serializable under the package name "tessera" so that a
saved model loads with keras.saving.load_model wherever tessera is installed."""

import numpy as np

_MASK_LAYERS = []
# How far the first fill of a hole reaches: FILL_STEPS rings of a hole grown in from its edge
# (holes up to twice that wide are filled; what is left stays the fill colour). So a network told
# the holes starts from a smooth guess, not from gray.
FILL_STEPS = 8
# Then BIHARMONIC_STEPS steps of gradient descent with momentum (the heavy ball) towards the
# biharmonic fill, the smoothest surface through the hole's edge that continues its slopes, as
# skimage's inpaint_biharmonic solves it exactly: a fixed, local iteration (each step reaches 2
# pixels further), so a tile gives what the whole image gives. Inside the holes of
# config/inpaint.yaml, on the 13 photos of resources/photos, 64 steps come to 0.01 dB below the
# exact solution on average (24 steps, the models of 2026-12-07, 0.38 dB), where the harmonic
# smoothing of earlier models stays 1.52 dB below (python bench/fills.py); each step widens every
# tile's margin by 2 pixels. config/inpaint.yaml trains as many epochs in its budget with 64 as
# it did with 24 (12): the steps run on 48-pixel patches there.
BIHARMONIC_STEPS = 64
# The momentum's constants for the bilaplacian's eigenvalues in [0.03, 64]: 64 bounds them for any
# image; 0.03 is about the smallest in a hole 6 pixels wide, the widest config/inpaint.yaml makes.
_LOW, _HIGH = 0.03, 64.0
_RATE = 4 / (_HIGH**0.5 + _LOW**0.5) ** 2
_MOMENTUM = ((_HIGH**0.5 - _LOW**0.5) / (_HIGH**0.5 + _LOW**0.5)) ** 2


def fill_reach(steps):
    """How far (pixels) FillHoles of so many biharmonic steps reaches; 0: the harmonic smoothing
    of models saved before the biharmonic steps."""
    return FILL_STEPS + (2 * steps if steps else FILL_STEPS)


def mask_layers():
    """The classes of the three layers of a network told where its holes are (model.mask, a fill
    colour): a hole is a pixel exactly the fill colour in all three channels, so the image itself
    says where its holes are, in training, reconstruction and apply alike, and the network still
    takes 3 channels in (a tile, a whole image, a damaged photo).

    HoleMask: the mask of holes (1 inside, 0 outside), one channel. FillHoles: the image with each
    hole filled from its edges, ring by ring with the mean of the known neighbours, then brought
    close to biharmonic inpainting there (steps; fill_reach gives its reach). KeepKnown([image,
    answer]): the image's own pixels outside the holes, the answer inside them, so only the holes
    are the network's to fill. All three compute in float32, where the fill colour is exact."""
    if _MASK_LAYERS:
        return _MASK_LAYERS
    import keras
    from keras import ops

    def holes(x, fill):
        near = ops.abs(ops.cast(x, "float32") - fill / 255) < 0.5 / 255
        return ops.cast(ops.all(near, axis=-1, keepdims=True), "float32")

    def box(x):
        # the 3 x 3 sum around each pixel, zeros beyond the edges
        kernel = ops.ones((3, 3, x.shape[-1], 1), "float32")
        return ops.depthwise_conv(x, kernel, 1, "same")

    class _Fill(keras.layers.Layer):
        def __init__(self, fill, **kwargs):
            super().__init__(**{"dtype": "float32", **kwargs})
            self.fill = int(fill)

        def get_config(self):
            return {**super().get_config(), "fill": self.fill}

    @keras.saving.register_keras_serializable(package="tessera")
    class HoleMask(_Fill):
        def call(self, x):
            return holes(x, self.fill)

        def compute_output_shape(self, shape):
            return (*shape[:-1], 1)

    # the 5-point Laplacian of each channel, one depthwise kernel made once
    cross = np.zeros((3, 3, 3, 1), np.float32)
    cross[1, :], cross[:, 1] = 1, 1
    cross[1, 1] = -4

    def laplacian(x, kernel):
        # mirrored at the image's edges (no pull towards the zeros beyond them)
        x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), "symmetric")
        return ops.depthwise_conv(x, kernel, 1, "valid")

    @keras.saving.register_keras_serializable(package="tessera")
    class FillHoles(_Fill):
        # steps 0 is the harmonic smoothing models saved before the biharmonic steps were made
        # with, whose configuration has no "steps": they load and fill as they were trained.
        def __init__(self, fill, steps=0, **kwargs):
            super().__init__(fill, **kwargs)
            self.steps = int(steps)

        def get_config(self):
            return {**super().get_config(), "steps": self.steps}

        def call(self, x):
            x = ops.cast(x, "float32")
            hole = holes(x, self.fill)
            known = 1 - hole
            x = x * known
            for _ in range(FILL_STEPS):  # grow in from the edges
                count = box(known)
                mean = box(x * known) / ops.maximum(count, 1)
                grown = hole * (1 - known) * ops.cast(count > 0, "float32")
                x, known = x + grown * mean, known + grown
            x = x + (1 - known) * (self.fill / 255)  # beyond the rings: the fill colour
            if not self.steps:
                area = box(ops.ones_like(hole))
                for _ in range(FILL_STEPS):  # smooth inside the holes only
                    x = x + hole * (box(x) / area - x)
                return x
            before, kernel = x, ops.convert_to_tensor(cross)
            for _ in range(self.steps):  # the known pixels stay as they are
                step = _MOMENTUM * (x - before) - _RATE * hole * laplacian(
                    laplacian(x, kernel), kernel
                )
                before, x = x, x + step
            return x

    @keras.saving.register_keras_serializable(package="tessera")
    class KeepKnown(_Fill):
        def call(self, inputs):
            image, answer = (ops.cast(t, "float32") for t in inputs)
            return ops.where(holes(image, self.fill) > 0, answer, image)

        def compute_output_shape(self, shapes):
            return shapes[1]

    _MASK_LAYERS.extend([HoleMask, FillHoles, KeepKnown])
    return _MASK_LAYERS


def shuffle_kernel(channels=3, factor=2):
    # The one-hot kernel of a factor x factor pixel unshuffle: input pixel (dy, dx) of channel c
    # goes to channel (factor * dy + dx) * channels + c (the order of depth_to_space), so a
    # stride-factor convolution with it is the unshuffle, and the transposed convolution with it
    # the shuffle (the sub-pixel convolution of ESPCN): plain layers, which save, load, export
    # and have their reach read like any other.
    k = np.zeros((factor, factor, channels, factor * factor * channels), np.float32)
    for dy in range(factor):
        for dx in range(factor):
            for c in range(channels):
                k[dy, dx, c, (factor * dy + dx) * channels + c] = 1.0
    return k


def cubic(x, a=-0.5):
    """Keys' cubic convolution kernel, as Pillow's and most bicubic resizers use (a = -0.5)."""
    x = np.abs(np.asarray(x, np.float64))
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


BICUBIC_PAD = 2  # the cubic kernel's reach, in input pixels


def bicubic_taps(factor):
    """(first, taps): output pixel o of a bicubic enlargement by a whole factor (pixel centres
    aligned, as Pillow's) is the sum over input pixels j of in[j] * taps[o - factor * j - first]."""
    # input pixel j weighs w((o + 0.5) / factor - 0.5 - j), nonzero for |that| < 2
    first = int(np.floor(-1.5 * factor - 0.5)) + 1
    last = int(np.ceil(2.5 * factor - 0.5)) - 1
    d = np.arange(first, last + 1)
    return first, cubic((d + 0.5) / factor - 0.5).astype(np.float32)


_UPSCALE_LAYERS = []


def upscale_layers():
    """The class of Bicubic(factor): a bicubic enlargement by a whole factor, the base an
    upscaling network adds its correction to, so that an untrained one is bicubic. The image is
    mirrored by BICUBIC_PAD pixels at its edges (symmetric), then one transposed convolution with
    the separable cubic taps (stride factor), cropped: fixed, so the same in training, tiles and
    export. Computed in float32."""
    if _UPSCALE_LAYERS:
        return _UPSCALE_LAYERS[0]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="tessera")
    class Bicubic(keras.layers.Layer):
        def __init__(self, factor, **kwargs):
            super().__init__(**{"dtype": "float32", **kwargs})
            self.factor = int(factor)
            first, taps = bicubic_taps(self.factor)
            # the transposed convolution of the padded input holds output pixel o at o + start
            self.start = BICUBIC_PAD * self.factor - first
            self.end = (2 * BICUBIC_PAD - 1) * self.factor + len(taps) - self.start
            kernel = np.zeros((len(taps), len(taps), 3, 3), np.float32)
            for c in range(3):
                kernel[:, :, c, c] = np.outer(taps, taps)
            self.kernel = kernel

        def call(self, x):
            p = BICUBIC_PAD
            x = ops.pad(ops.cast(x, "float32"), ((0, 0), (p, p), (p, p), (0, 0)), "symmetric")
            y = ops.conv_transpose(x, ops.convert_to_tensor(self.kernel), self.factor, "valid")
            s, e = self.start, self.end
            return y[:, s:-e, s:-e, :]

        def compute_output_shape(self, shape):
            n, h, w, c = shape
            return (n, h and h * self.factor, w and w * self.factor, c)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    _UPSCALE_LAYERS.append(Bicubic)
    return Bicubic
