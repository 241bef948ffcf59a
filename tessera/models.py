"""A registry of named, fully convolutional model presets, and measurements of a built model.

Keras is imported inside the builders so that the Snakefile can read the registry (names and
declared down-sampling) at parse time without starting a deep-learning framework.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from tessera import TesseraError


@dataclass(frozen=True)
class Arg:
    """One declared argument of a preset: its default, and the integers or words it allows."""

    name: str
    default: object
    low: int = None
    high: int = None
    choices: tuple = ()

    def allowed(self):
        if self.choices:
            return "|".join(self.choices)
        return f"{self.low}..{self.high}"

    def check(self, value, preset):
        ok = (
            value in self.choices
            if self.choices
            else (
                isinstance(value, int)
                and not isinstance(value, bool)
                and self.low <= value <= self.high
            )
        )
        if not ok:
            raise TesseraError(
                f"model.{self.name}: {value!r} is not allowed for preset '{preset}'; use "
                + (
                    f"one of {self.allowed()}"
                    if self.choices
                    else f"an integer from {self.low} to {self.high}"
                )
                + f" (default {self.default})"
            )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    # down-samplings as a function of the arguments: declared for checks before any job runs;
    # tests compare it to the built model
    downsamplings: Callable
    build: Callable
    args: tuple = ()

    def arguments(self):
        return ", ".join(f"{a.name} ({a.allowed()}, default {a.default})" for a in self.args)


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


def _input(mask):
    """The RGB input of a preset; what its first layer is given; and what a residual network
    corrects. Without a mask the image for both; with mask = a fill colour, the image with its
    holes filled beside their mask (4 channels), and that filled image."""
    from keras import Input, layers

    inp = Input((None, None, 3))
    if mask is None:
        return inp, inp, inp
    hole_mask, fill_holes, _ = mask_layers()
    filled = fill_holes(mask, name="fill_holes")(inp)
    both = layers.Concatenate(dtype="float32")([filled, hole_mask(mask, name="hole_mask")(inp)])
    return inp, both, filled


def _model(inp, image, answer, name, mask):
    """The preset's model; told the holes, its answer is kept inside them only (image: the input
    cropped as the answer is)."""
    from keras import Model

    if mask is not None:
        answer = mask_layers()[2](mask, name="keep_known")([image, answer])
    return Model(inp, answer, name=name)


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


def _compact(width=32, latent=12, kernel=3, mask=None):
    # Two stride-2 down-samplings to a 12-channel latent at 1/4 of the resolution (a quarter of the
    # input's values): a real bottleneck, and about five times the seed network's speed on a CPU.
    from keras import layers

    def conv(n, strides=1):
        return layers.Conv2D(n, kernel, strides=strides, padding="same", activation="relu")

    def up(n):
        return layers.Conv2DTranspose(n, kernel, strides=2, padding="same", activation="relu")

    inp, x, start = _input(mask)
    x = conv(width)(x)
    x = conv(width, 2)(x)
    x = conv(2 * width, 2)(x)
    x = layers.Conv2D(latent, 1, name="latent")(x)
    x = up(2 * width)(x)
    x = up(width)(x)
    x = conv(width)(x)
    return _model(inp, inp, layers.Conv2D(3, 1)(x), "compact", mask)


def _dncnn(depth=8, width=32, padding="same", mask=None):
    # For denoising: a full-resolution stack that predicts the noise, which is then subtracted
    # from the input (DnCNN's residual learning). The noise layer starts at zero, so the untrained
    # network is the identity: it never has to learn to copy the image, and it starts at the
    # input's own score rather than below it (a random residual adds a noise of its own). With
    # valid convolutions each layer trims a pixel from every side, and the input is cropped to
    # match before the subtraction (the blog post's "32 in, 24 out" for depth 4): no output pixel
    # is made from padding.
    from keras import layers

    inp, x, start = _input(mask)
    x = layers.Conv2D(width, 3, padding=padding, activation="relu")(x)
    for _ in range(depth - 2):
        x = layers.Conv2D(width, 3, padding=padding, activation="relu")(x)
    # The noise estimate and the subtraction stay in float32 under a mixed precision policy, so
    # the clean image is not rounded to bfloat16's 8 bits of mantissa.
    residual = layers.Conv2D(
        3, 3, padding=padding, name="noise", dtype="float32", kernel_initializer="zeros"
    )(x)
    if padding == "same":
        image, given = inp, start
    else:
        image, given = layers.Cropping2D(depth)(inp), layers.Cropping2D(depth)(start)
    return _model(inp, image, layers.Subtract(dtype="float32")([given, residual]), "dncnn", mask)


def _unet(width=16, levels=2, output="direct", mask=None):
    # The blog post's "concatenate layers": each decoder level sees the up-sampled coarse features
    # beside the encoder's features of the same resolution, so detail skips the bottleneck. With
    # output "residual" it predicts a correction that is added to its input, as dncnn does, and
    # starts as the identity (restoration: most of the answer is the input itself).
    from keras import layers

    def block(x, n):
        for _ in range(2):
            x = layers.Conv2D(n, 3, padding="same", activation="relu")(x)
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
        return _model(inp, inp, layers.Conv2D(3, 1)(x), "unet", mask)
    # float32, as dncnn's noise layer, so the image is not rounded to bfloat16
    correction = layers.Conv2D(3, 1, dtype="float32", kernel_initializer="zeros")(x)
    return _model(inp, inp, layers.Add(dtype="float32")([start, correction]), "unet", mask)


def _residual_block(x, n):
    # two convolutions and a shortcut (a 1x1 projection where the width changes), as in ResNet
    from keras import layers

    shortcut = x if x.shape[-1] == n else layers.Conv2D(n, 1)(x)
    y = layers.Conv2D(n, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(n, 3, padding="same")(y)
    return layers.Activation("relu")(layers.Add()([shortcut, y]))


def _resnet(width=24, depth=2, latent=12, mask=None):
    # The blog post's "convolution+pooling block inspired by ResNet": residual blocks, each followed
    # by a 2x2 max pooling, down to a latent; the decoder mirrors it with nearest up-sampling.
    from keras import layers

    inp, x, start = _input(mask)
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    for level in range(depth):
        x = layers.MaxPooling2D(2)(_residual_block(x, width * 2**level))
    x = layers.Conv2D(latent, 1, name="latent")(x)
    for level in reversed(range(depth)):
        x = _residual_block(layers.UpSampling2D(2)(x), width * 2**level)
    return _model(inp, inp, layers.Conv2D(3, 1)(x), "resnet", mask)


def _shuffle_kernel(channels=3):
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


def _ffdnet(depth=8, width=64, mask=None):
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
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(12, 3, padding="same", dtype="float32", kernel_initializer="zeros")(x)
    shuffle = layers.Conv2DTranspose(
        3, 2, strides=2, use_bias=False, trainable=False, name="shuffle", dtype="float32"
    )
    residual = shuffle(x)
    model = _model(inp, inp, layers.Subtract(dtype="float32")([start, residual]), "ffdnet", mask)
    unshuffle.set_weights([_shuffle_kernel(channels)])
    # a transposed convolution's kernel is (h, w, out, in): the same one-hot map, read backwards
    shuffle.set_weights([_shuffle_kernel()])
    return model


_PADDING = Arg("padding", "same", choices=("same", "valid"))
PRESETS = {
    p.name: p
    for p in [
        Preset(
            "compact",
            "bottleneck autoencoder, 12-channel latent at 1/4 size (default)",
            lambda a: 2,
            _compact,
            (Arg("width", 32, 1, 512), Arg("latent", 12, 1, 512), Arg("kernel", 3, 1, 15)),
        ),
        Preset(
            "dncnn",
            "residual denoiser: 8 full-resolution layers predict the noise",
            lambda a: 0,
            _dncnn,
            (Arg("depth", 8, 2, 64), Arg("width", 32, 1, 512), _PADDING),
        ),
        Preset("seed", "the blog post's 32x32 network, layer for layer", lambda a: 0, _seed),
        Preset(
            "unet",
            "U-Net: the decoder concatenates the encoder's features of each resolution",
            lambda a: a["levels"],
            _unet,
            (
                Arg("width", 16, 1, 256),
                Arg("levels", 2, 1, 5),
                Arg("output", "direct", choices=("direct", "residual")),
            ),
        ),
        Preset(
            "resnet",
            "autoencoder of residual convolution + max pooling blocks down to a latent",
            lambda a: a["depth"],
            _resnet,
            (Arg("width", 24, 1, 256), Arg("depth", 2, 1, 5), Arg("latent", 12, 1, 512)),
        ),
        Preset(
            "ffdnet",
            "residual denoiser on the four half-resolution sub-images (FFDNet style)",
            lambda a: 1,
            _ffdnet,
            (Arg("depth", 8, 2, 64), Arg("width", 64, 1, 512)),
        ),
    ]
}
DEFAULT_PRESET = "compact"
_FILE_KEYS = ("file", "function", "args")


def get_preset(name):
    if name not in PRESETS:
        raise TesseraError(
            f"model.preset: unknown preset '{name}'; choose one of: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def normalise(spec):
    """The model section of a config (or a preset's name) with every default filled in and every
    argument checked: {"preset": name, **arguments}, or for a network of one's own {"file",
    "function", "args", "hash"} (the hash of the file's code, comments left out), plus "init"
    when training starts from earlier weights, and "mask" (a fill colour) when the task tells the
    network where its holes are (tessera.task_restore). Raises TesseraError naming the key."""
    from tessera import codeversion

    spec = {"preset": spec} if isinstance(spec, str) else dict(spec or {})
    init, mask = spec.pop("init", None), spec.pop("mask", None)
    if "file" in spec:
        if mask is not None:
            raise TesseraError(
                f"model.file: {spec['file']} gets the image alone; a mask of holes goes to the "
                "presets only (set mask: false on the holes degradation)"
            )
        extra = sorted(set(spec) - set(_FILE_KEYS) - {"hash"})
        if extra:
            raise TesseraError(
                f"model.{extra[0]}: a model file takes only {', '.join(_FILE_KEYS)} (and init); "
                "put the function's arguments under model.args"
            )
        path = Path(spec["file"])
        if not path.is_file():
            raise TesseraError(f"model.file: {path}: no such file")
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise TesseraError(f"model.args: {args!r} is not a mapping of keyword arguments")
        out = {
            "file": str(path),
            "function": spec.get("function") or "build",
            "args": args,
            "hash": codeversion.file_hash(path),
        }
    else:
        name = spec.pop("preset", None) or DEFAULT_PRESET
        preset = get_preset(name)
        declared = {a.name: a for a in preset.args}
        for key in spec:
            if key not in declared:
                takes = preset.arguments() or "no arguments"
                raise TesseraError(
                    f"model.{key}: unknown argument of preset '{name}'; it takes: {takes}"
                )
        out = {"preset": name}
        for a in preset.args:
            value = spec.get(a.name, a.default)
            a.check(value, name)
            out[a.name] = value
    if mask is not None:
        if out.get("preset") == "seed":
            raise TesseraError(
                "model.preset: seed is the blog post's network layer for layer and takes no "
                "mask of holes; pick another preset, or set mask: false on the holes degradation"
            )
        out["mask"] = int(mask)
    if init is not None:
        out["init"] = str(init)
    return out


def arguments(spec):
    """The arguments a builder is called with."""
    return {k: v for k, v in spec.items() if k not in ("preset", "init")}


def label(spec):
    """A short name for the network: "compact (width 48)", or "nets/mine.py:build"."""
    spec = normalise(spec)
    if "file" in spec:
        return f"{spec['file']}:{spec['function']}"
    preset = get_preset(spec["preset"])
    changed = [f"{a.name} {spec[a.name]}" for a in preset.args if spec[a.name] != a.default]
    if "mask" in spec:
        changed.append("told the holes")
    return spec["preset"] + (f" ({', '.join(changed)})" if changed else "")


def declared_size_multiple(spec):
    """The size multiple known before anything is built; 1 for a model file, which the training
    job measures and checks."""
    spec = normalise(spec)
    if "file" in spec:
        return 1
    return 2 ** get_preset(spec["preset"]).downsamplings(spec)


def build(spec):
    """The network a config's model section (or a preset's name) describes, as a Keras model."""
    spec = normalise(spec) if isinstance(spec, str) or "hash" not in spec else spec
    if "file" in spec:
        return build_file(spec)
    return get_preset(spec["preset"]).build(**arguments(spec))


def build_file(spec):
    """Import a user's model file and call its function; checked as check_model says. A file
    whose code changed since spec["hash"] was taken is refused: its weights would not fit."""
    import importlib.util

    from tessera import codeversion

    path, function = Path(spec["file"]), spec.get("function") or "build"
    if not path.is_file():
        raise TesseraError(f"model.file: {path}: no such file")
    now = codeversion.file_hash(path)
    if spec.get("hash") and spec["hash"] != now:
        raise TesseraError(
            f"model.file: {path} has changed since the model was trained (code hash "
            f"{spec['hash']}, now {now}); restore it or train again"
        )
    where = f"{path}:{function}"
    module_spec = importlib.util.spec_from_file_location(f"tessera_model_{now}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's code: any error is theirs to see, in one line
        raise TesseraError(f"model.file: {path} fails to import: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TesseraError(f"model.function: {path} has no function '{function}'")
    try:
        model = fn(**(spec.get("args") or {}))
    except Exception as e:
        raise TesseraError(
            f"model.args: {where}(**{spec.get('args') or {}}) failed: " f"{type(e).__name__}: {e}"
        ) from None
    check_model(model, where)
    return model


def check_model(model, where, sizes=(64, 128, 192)):
    """One line for each way a built model cannot be trained and tiled by tessera: not a Keras
    model, not one image in and one out, a fixed input size, other than 3 channels in and out, or
    an output whose side is neither a fixed multiple of the input's nor the input's less a fixed
    border (tried at a few sizes, multiples of 64 so that down-sampling divides them)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TesseraError(
            f"model.file: {where} returned {type(model).__name__}, not a keras.Model"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TesseraError(
            f"model.file: {where} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; tessera needs one image in and one out"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is not None or shape[2] is not None:
        raise TesseraError(
            f"model.file: {where} takes inputs of fixed shape {shape[1:]}; use "
            "keras.Input((None, None, 3)) so that it takes tiles and whole images of any size"
        )
    if shape[3] != 3:
        raise TesseraError(f"model.file: {where} takes {shape[3]} channels; tessera gives 3 (RGB)")
    outs = []
    for s in sizes:
        try:
            out = tuple(model.compute_output_shape((1, s, s, 3)))
        except Exception as e:
            raise TesseraError(
                f"model.file: {where} cannot take a {s}x{s} input: {type(e).__name__}: {e}"
            ) from None
        if len(out) != 4 or out[3] != 3:
            raise TesseraError(
                f"model.file: {where} gives outputs of shape {out[1:]}; "
                "tessera needs 3 channels (RGB)"
            )
        if out[1] != out[2] or out[1] is None:
            raise TesseraError(
                f"model.file: {where} gives a {out[1]}x{out[2]} output for a "
                f"{s}x{s} input; it must keep square tiles square"
            )
        outs.append(out[1])
    ratios = {Fraction(o, s) for o, s in zip(outs, sizes)}
    borders = {s - o for o, s in zip(outs, sizes)}
    if len(ratios) > 1 and len(borders) > 1:
        shown = ", ".join(f"{s} -> {o}" for s, o in zip(sizes, outs))
        raise TesseraError(
            f"model.file: {where} gives outputs ({shown}) that are neither a fixed multiple of "
            "the input's size nor the input's less a fixed border"
        )


@dataclass(frozen=True)
class Geometry:
    """How a model's output side follows its input side, for input sides that are multiples of
    `multiple`: (side - 2 * border) * scale. A same-size model has scale 1 and border 0; valid
    convolutions give a border ("32 in, 24 out"); up- and down-sampling give another scale."""

    multiple: int
    scale: Fraction = Fraction(1)
    border: int = 0

    def output_side(self, side):
        return (side - 2 * self.border) * self.scale


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


def size_multiple(model, largest=64):
    """The smallest power of two m such that inputs whose sides are multiples of m give outputs
    of one Geometry (the same size, for most models)."""
    return geometry(model, largest).multiple


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
        return reach.window(2 * 2 * FILL_STEPS + 1, 1, 2 * FILL_STEPS)
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
