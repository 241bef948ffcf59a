"""Tessera's own Keras layers, registered serializable under the package name "tessera" so that a
saved model loads with keras.saving.load_model wherever tessera is installed."""

import numpy as np

_MASK_LAYERS = []
# How far the first fill of a hole reaches: FILL_STEPS rings of a hole grown in from its edge
# (holes up to twice that wide are filled; what is left stays the fill colour), then as many
# smoothing steps. So a network told the holes starts from a smooth guess, not from gray.
FILL_STEPS = 8


def mask_layers():
    """The classes of the three layers of a network told where its holes are (model.mask, a fill
    colour): a hole is a pixel exactly the fill colour in all three channels, so the image itself
    says where its holes are, in training, reconstruction and apply alike, and the network still
    takes 3 channels in (a tile, a whole image, a damaged photo).

    HoleMask: the mask of holes (1 inside, 0 outside), one channel. FillHoles: the image with each
    hole filled from its edges, ring by ring with the mean of the known neighbours, then smoothed
    there (harmonic, as a heat spreads); its reach is 2 * FILL_STEPS pixels. KeepKnown([image,
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

    @keras.saving.register_keras_serializable(package="tessera")
    class FillHoles(_Fill):
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
            area = box(ops.ones_like(hole))
            for _ in range(FILL_STEPS):  # smooth inside the holes only
                x = x + hole * (box(x) / area - x)
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


def shuffle_kernel(channels=3):
    # The one-hot kernel of a 2x2 pixel unshuffle: input pixel (dy, dx) of channel c goes to
    # channel (2 * dy + dx) * channels + c (the order of depth_to_space), so a stride-2
    # convolution with it is the unshuffle, and the transposed convolution with it the shuffle:
    # plain layers, which save, load and have their reach read like any other.
    k = np.zeros((2, 2, channels, 4 * channels), np.float32)
    for dy in range(2):
        for dx in range(2):
            for c in range(channels):
                k[dy, dx, c, (2 * dy + dx) * channels + c] = 1.0
    return k
