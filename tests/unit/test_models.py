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
    m = models.size_multiple(model)
    assert m == models.declared_size_multiple(name)
    x = np.random.default_rng(0).random((1, 5 * m * 4, 3 * m * 4, 3), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == x.shape


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_receptive_radius_is_where_an_impulse_stops_reaching(name):
    model = models.build(name)
    r = models.receptive_radius(model)
    m = models.size_multiple(model)
    assert r > 0
    size = 8 * m * max(1, (2 * r) // (8 * m) + 2)
    base = np.random.default_rng(1).random((1, size, size, 3), dtype=np.float32)
    poked = base.copy()
    c = size // 2
    poked[0, c, c] += 1.0
    diff = np.abs(model.predict(poked, verbose=0) - model.predict(base, verbose=0)).max(axis=3)[0]
    ys, xs = np.nonzero(diff)
    assert max(np.abs(ys - c).max(), np.abs(xs - c).max()) <= r


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
    assert models.size_multiple(model) == 4
