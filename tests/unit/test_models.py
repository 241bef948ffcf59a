import numpy as np
import pytest

from tessera import TesseraError, models


def test_seed_preset_matches_the_blog_posts_summary_table():
    model = models.build("seed")
    info = models.describe(model)
    assert info["params"] == 48579
    assert info["non_trainable_params"] == 160
    assert info["trainable_params"] == 48419
    # the layer types and order of the post's table
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Conv2D", "Conv2D", "Dropout", "BatchNormalization",
        "Conv2DTranspose", "Cropping2D", "BatchNormalization", "Conv2DTranspose", "Cropping2D",
        "BatchNormalization", "Dense", "Dense",
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_every_preset_is_fully_convolutional_and_declares_its_size_multiple(name):
    model = models.build(name)
    m = models.geometry(model).multiple
    assert m == models.declared_size_multiple(name)
    x = np.random.default_rng(0).random((1, 5 * m * 4, 3 * m * 4, 3), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == x.shape


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_receptive_radius_is_where_an_impulse_stops_reaching(name):
    model = models.build(name)
    # as trained: a residual preset's zero last layer given weights, so that it reaches
    with models.woken(model):
        r = models.receptive_radius(model)
        m = models.geometry(model).multiple
        assert r > 0 and r == models.layer_radius(model) == models.probe_radius(model)
        size = 8 * m * max(1, (2 * r) // (8 * m) + 2)
        base = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32)
        poked = base.copy()
        c = size // 2
        poked[0, c, c] += 1.0
        out = model.predict(base, verbose=0)
        diff = np.abs(model.predict(poked, verbose=0) - out).max(axis=3)[0]
        # changes under the probe's tolerance are the kernel library's rounding, not reach
        ys, xs = np.nonzero(diff > models.PROBE_RTOL * np.abs(out).max())
        # one impulse position; a strided network reaches its radius from some positions only
        assert max(np.abs(ys - c).max(), np.abs(xs - c).max()) <= r


def _small_networks():
    """Networks whose reach the layer arithmetic must get right: even kernels, strides,
    dilation, pooling, transposed convolutions, cropping, padding, up-sampling, a skip."""
    from keras import Input, Model, layers

    def net(*stack, skip=False):
        x = inp = Input((None, None, 3))
        x = layers.Conv2D(4, 3, padding="same")(x)
        first = x
        for layer in stack:
            x = layer(x)
        if skip:
            x = layers.Concatenate()([x, first])
        return Model(inp, layers.Conv2D(3, 3, padding="same")(x))

    return {
        "even kernel": net(
            layers.Conv2D(4, 4, padding="same"), layers.Conv2D(4, 2, padding="same")
        ),
        "dilated": net(layers.Conv2D(4, 3, dilation_rate=3, padding="same")),
        "strided": net(
            layers.Conv2D(4, 5, strides=2, padding="same"),
            layers.Conv2DTranspose(4, 4, strides=2, padding="same"),
        ),
        "pooled": net(
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.AveragePooling2D(2),
            layers.UpSampling2D(4),
        ),
        "valid, cropped": net(
            layers.ZeroPadding2D(2),
            layers.Conv2D(4, 5),
            layers.Conv2DTranspose(4, 4),
            layers.Cropping2D(((1, 2), (2, 1))),
        ),
        "u-net": net(
            layers.Conv2D(4, 3, strides=2, padding="same"),
            layers.Conv2D(4, 3, padding="same"),
            layers.Conv2DTranspose(4, 2, strides=2),
            skip=True,
        ),
    }


@pytest.mark.parametrize("name", sorted(_small_networks()))
def test_the_layer_arithmetic_never_underestimates_the_measured_reach(name):
    model = _small_networks()[name]
    reach = models.layer_radius(model)
    assert reach is not None and reach >= models.probe_radius(model) > 0
    # exact for these: a bound too loose would only cost tiling work, but it would show here
    assert reach == models.probe_radius(model)


# The largest change a kernel library that sums in another order made beyond a network's reach,
# as a share of its output's scale (tessera/models/geometry.py, PROBE_RTOL: bench/radius.py
# prints it): the noise the probe's tolerance was set for.
KERNEL_NOISE = 3.4e-7


def _jittered(model, scale):
    """The model with noise of about `scale` added to every output pixel, different in every call
    and batch position: what a kernel library that sums in another order does."""
    import keras

    class Jitter(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.seeds = keras.random.SeedGenerator(0)

        def call(self, x):
            return x + keras.random.normal(keras.ops.shape(x), stddev=scale, seed=self.seeds)

    inp = keras.Input((None, None, 3))
    return keras.Model(inp, Jitter()(model(inp)), name=f"jittered_{model.name}")


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_float_noise_in_every_output_pixel_changes_neither_radius_nor_size_multiple(name):
    model = models.build(name)
    # as trained: a residual preset's zero last layer given weights, so that it reaches
    with models.woken(model):
        # in the units of the output, whose largest values are about 1: noise of 1e-8 would sit
        # below float32's resolution there (6e-8 at 0.5) and vanish in the rounding
        outputs = model.predict(np.random.default_rng(0).random((1, 64, 64, 3)), verbose=0)
        noisy = _jittered(model, KERNEL_NOISE * float(np.abs(outputs).max()))
        assert models.layer_radius(noisy) is None  # an unknown layer: the probe must measure it
        # Within 64x64 probes, so the call stays as quick as for the clean model: counting every
        # change as reach would grow the probes until the limit and stop.
        radius = models.probe_radius(noisy, max_side=64)
        assert radius == models.receptive_radius(model) and radius == models.receptive_radius(noisy)
        assert models.geometry(noisy).multiple == models.geometry(model).multiple
        with pytest.raises(TesseraError, match=f"model 'jittered_{name}'.*64x64"):
            models.probe_radius(noisy, max_side=64, rtol=0)  # exact comparison: what used to run


def test_unknown_preset_names_the_key_and_the_choices():
    with pytest.raises(TesseraError, match=r"model.preset.*compact.*seed"):
        models.get_preset("nope")


def test_size_multiple_of_a_network_with_skip_connections():
    from keras import Input, Model, layers

    x = inp = Input((None, None, 3))
    down = layers.Conv2D(4, 3, strides=2, padding="same")(x)
    down = layers.Conv2D(4, 3, strides=2, padding="same")(down)
    up = layers.Conv2DTranspose(4, 2, strides=2)(down)
    skip = layers.Conv2D(4, 1, strides=2)(x)
    up = layers.Add()([up, skip])  # refuses sizes that do not halve twice evenly
    model = Model(inp, layers.Conv2DTranspose(3, 2, strides=2)(up))
    assert models.geometry(model).multiple == 4
