"""The presets: each builder registered where it is defined, with its declared arguments.

Keras is imported inside the builders, so that reading the registry starts no framework.
"""

from tessera.models import layers as layers_
from tessera.models.registry import Arg, preset

_PADDING = Arg("padding", "same", choices=("same", "valid"))
_FACTOR = Arg("factor", 1, 1, 4)

# He initialisation for every convolution a ReLU follows: it keeps the activations' scale from
# layer to layer. Keras' default (Glorot) halves their variance at each ReLU layer, so in an
# 8-layer network the last hidden layer's activations are a hundredth of the input's; Adam then
# moves the biases by the learning rate whatever the activations' scale, a few steps push them
# below zero, and the ReLUs die for good: the network's output stays its input.
HIDDEN_INIT = "he_normal"
# The last layer of a residual network (the correction it adds to its input) starts small, not
# zero: at zero, the hidden layers get no gradient until it has grown, and what reaches them
# first is noise that Adam scales up to full steps. Small enough that the untrained network
# gives its input back within a fraction of an 8-bit level.
HEAD_STDDEV = 1e-4


def _conv(n, kernel=3, **kwargs):
    """A convolution followed by a ReLU, He-initialised."""
    from keras import layers

    options = {"padding": "same", "activation": "relu", "kernel_initializer": HIDDEN_INIT}
    return layers.Conv2D(n, kernel, **{**options, **kwargs})


def _head(channels, kernel=3, **kwargs):
    """The last convolution of a residual network: its correction, small at first, in float32
    (under a mixed precision policy the image it is added to must not be rounded to bfloat16's
    8 bits of mantissa)."""
    from keras import initializers, layers

    init = initializers.RandomNormal(stddev=HEAD_STDDEV)
    options = {"padding": "same", "dtype": "float32", "kernel_initializer": init}
    return layers.Conv2D(channels, kernel, **{**options, **kwargs})


def _enlarged(small, correction, factor):
    """An upscaling network's answer: the bicubic enlargement of its input plus its correction,
    made at the small image's resolution with factor**2 channels per colour and put in place by
    a pixel shuffle (ESPCN's sub-pixel convolution)."""
    from keras import layers

    shuffle = layers.Conv2DTranspose(
        3, factor, strides=factor, use_bias=False, trainable=False, name="shuffle", dtype="float32"
    )
    moved = shuffle(correction)
    shuffle.set_weights([layers_.shuffle_kernel(3, factor)])
    base = layers_.upscale_layers()(factor, name="bicubic")(small)
    return layers.Add(dtype="float32")([base, moved])


def _input(mask):
    """The RGB input of a preset; what its first layer is given; and what a residual network
    corrects. Without a mask the image for both; with mask = a fill colour, the image with its
    holes filled beside their mask (4 channels), and that filled image."""
    from keras import Input, layers

    inp = Input((None, None, 3))
    if mask is None:
        return inp, inp, inp
    hole_mask, fill_holes, _ = layers_.mask_layers()
    filled = fill_holes(mask, layers_.BIHARMONIC_STEPS, name="fill_holes")(inp)
    both = layers.Concatenate(dtype="float32")([filled, hole_mask(mask, name="hole_mask")(inp)])
    return inp, both, filled


def _model(inp, image, answer, name, mask, holes_only=True):
    """The preset's model; told the holes (and nothing else to mend), its answer is kept inside
    them only (image: the input cropped as the answer is)."""
    from keras import Model

    if mask is not None and holes_only:
        answer = layers_.mask_layers()[2](mask, name="keep_known")([image, answer])
    return Model(inp, answer, name=name)


@preset(
    "seed",
    "the blog post's 32x32 network, layer for layer",
    border=lambda a: 0,
    radius=lambda a: 9,  # its layers never change
)
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


@preset(
    "compact",
    "bottleneck autoencoder, 12-channel latent at 1/4 size (default)",
    lambda a: 2,
    (Arg("width", 32, 1, 512), Arg("latent", 12, 1, 512), Arg("kernel", 3, 1, 15)),
    border=lambda a: 0,
    # 3 convolutions of `kernel` on the way down (strides 1, 2, 2), 2 transposed on the way up
    # and 1 more: (kernel - 1) / 2 each, at scales 1, 1, 2, 2, 1, 1 on either side; an even
    # kernel's same padding puts its extra tap on one side
    radius=lambda a: 4 * (a["kernel"] - 1) + (1 - a["kernel"] % 2),
)
def _compact(width=32, latent=12, kernel=3, mask=None, holes_only=True):
    # Two stride-2 down-samplings to a 12-channel latent at 1/4 of the resolution (a quarter of the
    # input's values): a real bottleneck, and about five times the seed network's speed on a CPU.
    from keras import layers

    def conv(n, strides=1):
        return _conv(n, kernel, strides=strides)

    def up(n):
        return layers.Conv2DTranspose(
            n, kernel, strides=2, padding="same", activation="relu", kernel_initializer=HIDDEN_INIT
        )

    inp, x, _ = _input(mask)
    x = conv(width)(x)
    x = conv(width, 2)(x)
    x = conv(2 * width, 2)(x)
    x = layers.Conv2D(latent, 1, name="latent")(x)
    x = up(2 * width)(x)
    x = up(width)(x)
    x = conv(width)(x)
    return _model(inp, inp, layers.Conv2D(3, 1)(x), "compact", mask, holes_only)


@preset(
    "dncnn",
    "residual network at full resolution: 8 layers predict the damage (x2-x4 with factor)",
    lambda a: 0,
    (Arg("depth", 8, 2, 64), Arg("width", 32, 1, 512), _PADDING, _FACTOR),
    border=lambda a: a["depth"] if a["padding"] == "valid" else 0,
    # one pixel a layer; enlarging, the bicubic base reaches one small pixel further
    radius=lambda a: a["depth"] + (a["factor"] > 1),
)
def _dncnn(depth=8, width=32, padding="same", factor=1, mask=None, holes_only=True):
    # For denoising: a full-resolution stack that predicts the noise, which is then subtracted
    # from the input (DnCNN's residual learning); the untrained network is about the identity
    # (_head), so it starts at the input's own score rather than below it. With valid
    # convolutions each layer trims a pixel from every side, and the input is cropped to match
    # before the subtraction (the blog post's "32 in, 24 out" for depth 4): no output pixel is
    # made from padding. With a factor above 1 (task upscale) the same stack works on the small
    # image and its correction is shuffled onto a bicubic enlargement (_enlarged).
    from keras import layers

    if factor > 1 and mask is not None:
        raise ValueError("an enlarging network takes no mask of holes")
    inp, x, start = _input(mask)
    for _ in range(depth - 1):
        x = _conv(width, padding=padding)(x)
    residual = _head(3 * factor * factor, padding=padding, name="noise")(x)
    if padding == "same":
        image, given = inp, start
    else:
        image, given = layers.Cropping2D(depth)(inp), layers.Cropping2D(depth)(start)
    if factor > 1:
        return _model(inp, image, _enlarged(given, residual, factor), "dncnn", mask, holes_only)
    return _model(
        inp, image, layers.Subtract(dtype="float32")([given, residual]), "dncnn", mask, holes_only
    )


@preset(
    "unet",
    "U-Net: the decoder concatenates the encoder's features of each resolution",
    lambda a: a["levels"],
    (
        Arg("width", 16, 1, 256),
        Arg("levels", 2, 1, 5),
        Arg("output", "direct", choices=("direct", "residual")),
    ),
    border=lambda a: 0,
    # two 3x3 convolutions per level at each resolution, down and up: doubling with each level
    radius=lambda a: 14 * 2 ** (a["levels"] - 1) - 5,
)
def _unet(width=16, levels=2, output="direct", mask=None, holes_only=True):
    # The blog post's "concatenate layers": each decoder level sees the up-sampled coarse features
    # beside the encoder's features of the same resolution, so detail skips the bottleneck. With
    # output "residual" it predicts a correction that is added to its input, as dncnn does, and
    # starts as about the identity (restoration: most of the answer is the input itself).
    from keras import layers

    def block(x, n):
        for _ in range(2):
            x = _conv(n)(x)
        return x

    inp, x, start = _input(mask)
    skips = []
    for level in range(levels):
        x = block(x, width * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, width * 2**levels)
    for level in reversed(range(levels)):
        x = layers.UpSampling2D(2)(x)
        x = block(layers.Concatenate()([x, skips[level]]), width * 2**level)
    if output == "direct":
        return _model(inp, inp, layers.Conv2D(3, 1)(x), "unet", mask, holes_only)
    correction = _head(3, 1)(x)
    return _model(
        inp, inp, layers.Add(dtype="float32")([start, correction]), "unet", mask, holes_only
    )


def _residual_block(x, n):
    # two convolutions and a shortcut (a 1x1 projection where the width changes), as in ResNet.
    # The second starts at zero, so that each block starts as its shortcut ("zero-init residual",
    # Goyal et al.): He-initialised, the blocks' sums doubled the signal block after block and the
    # first epochs were spent undoing an output far off the image.
    from keras import layers

    shortcut = x if x.shape[-1] == n else layers.Conv2D(n, 1)(x)
    y = _conv(n)(x)
    y = layers.Conv2D(n, 3, padding="same", kernel_initializer="zeros")(y)
    return layers.Activation("relu")(layers.Add()([shortcut, y]))


@preset(
    "resnet",
    "autoencoder of residual convolution + max pooling blocks down to a latent",
    lambda a: a["depth"],
    (Arg("width", 24, 1, 256), Arg("depth", 2, 1, 5), Arg("latent", 12, 1, 512)),
    border=lambda a: 0,
    radius=lambda a: 10 * 2 ** (a["depth"] - 1) - 4,
)
def _resnet(width=24, depth=2, latent=12, mask=None, holes_only=True):
    # The blog post's "convolution+pooling block inspired by ResNet": residual blocks, each followed
    # by a 2x2 max pooling, down to a latent; the decoder mirrors it with nearest up-sampling.
    from keras import layers

    inp, x, _ = _input(mask)
    x = _conv(width)(x)
    for level in range(depth):
        x = layers.MaxPooling2D(2)(_residual_block(x, width * 2**level))
    x = layers.Conv2D(latent, 1, name="latent")(x)
    for level in reversed(range(depth)):
        x = _residual_block(layers.UpSampling2D(2)(x), width * 2**level)
    return _model(inp, inp, layers.Conv2D(3, 1)(x), "resnet", mask, holes_only)


@preset(
    "ffdnet",
    "residual denoiser on the four half-resolution sub-images (FFDNet style)",
    lambda a: 1,
    (Arg("depth", 8, 2, 64), Arg("width", 64, 1, 512)),
    border=lambda a: 0,
    # 3x3 convolutions at half resolution, between the 2x2 unshuffle and shuffle
    radius=lambda a: 2 * a["depth"] + 1,
)
def _ffdnet(depth=8, width=64, mask=None, holes_only=True):
    # FFDNet's trick for speed: work on the four half-resolution sub-images of the input, stacked
    # as 12 channels, so each layer has a quarter of the positions; the noise estimate is shuffled
    # back to full resolution and subtracted, as in dncnn.
    from keras import layers

    inp, x, start = _input(mask)
    channels = 3 if mask is None else 4
    unshuffle = layers.Conv2D(
        4 * channels, 2, strides=2, use_bias=False, trainable=False, name="unshuffle"
    )
    x = unshuffle(x)
    for _ in range(depth - 1):
        x = _conv(width)(x)
    x = _head(12)(x)
    shuffle = layers.Conv2DTranspose(
        3, 2, strides=2, use_bias=False, trainable=False, name="shuffle", dtype="float32"
    )
    residual = shuffle(x)
    model = _model(
        inp, inp, layers.Subtract(dtype="float32")([start, residual]), "ffdnet", mask, holes_only
    )
    unshuffle.set_weights([layers_.shuffle_kernel(channels)])
    # a transposed convolution's kernel is (h, w, out, in): the same one-hot map, read backwards
    shuffle.set_weights([layers_.shuffle_kernel()])
    return model
