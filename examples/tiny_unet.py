"""A network of one's own for tessera: `model: {file: examples/tiny_unet.py, args: {width: 16}}`."""

import keras
from keras import layers


def build(width=16):
    inp = keras.Input((None, None, 3))  # any size: tessera trains on patches, rebuilds whole images
    skip = layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(skip)
    x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Concatenate()([x, skip])
    return keras.Model(inp, layers.Conv2D(3, 1)(x), name="tiny_unet")
