import numpy as np
import pytest

from tessera import images, models
from tessera import reconstruct as rec
from tests.conftest import sample
from tests.reference import whole_image


@pytest.fixture(scope="module", params=sorted(models.PRESETS))
def model(request):
    m = models.build(request.param)
    return m, models.describe(m)


IMAGES = {
    "random odd": np.random.default_rng(0).integers(0, 256, (53, 97, 3), dtype=np.uint8),
    "real photo": sample("rocket.jpg", (200, 100, 331, 190)),
    "thin strip": sample("coffee.png", (0, 0, 150, 9)),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_crop_tiling_equals_the_model_on_the_whole_image(model, name):
    m, info = model
    image = IMAGES[name]
    margin = rec.default_margin(info["receptive_radius"], info["size_multiple"])
    tile = 2 * margin + 2 * info["size_multiple"] * 4
    plan = rec.make_plan(*image.shape[:2], tile, margin, info["size_multiple"], "crop")
    tiled = rec.reconstruct(m, image, plan, batch_size=3)
    assert tiled.shape == image.shape
    assert np.abs(tiled - whole_image(m, image, plan)).max() < 1e-4


def test_naive_tiling_differs_at_tile_borders():
    m = models.build("seed")
    image = IMAGES["real photo"]
    plan = rec.make_plan(*image.shape[:2], 32, 0, 1, "naive")
    tiled = rec.reconstruct(m, image, plan, batch_size=4)
    assert np.abs(tiled - whole_image(m, image, plan)).max() > 1e-3


def test_plan_refuses_a_margin_that_leaves_no_stride():
    from tessera import TesseraError

    with pytest.raises(TesseraError, match="reconstruct.margin"):
        rec.make_plan(100, 100, 32, 16, 4)
    with pytest.raises(TesseraError, match="reconstruct.tile"):
        rec.make_plan(100, 100, 30, 2, 4)


def test_batches_have_one_fixed_shape():
    shapes = []

    class Spy:
        def predict_on_batch(self, x):
            shapes.append(x.shape)
            return x

    image = IMAGES["random odd"]
    plan = rec.make_plan(*image.shape[:2], 24, 4, 1)
    out = rec.reconstruct(Spy(), image, plan, batch_size=5)
    assert plan.count % 5 != 0 and set(shapes) == {(5, 24, 24, 3)}
    assert np.array_equal(rec.to_uint8(out), image)  # identity model: tiling loses nothing


def test_self_ensemble_is_the_mean_over_the_eight_turns():
    m = models.build("seed")
    image = IMAGES["real photo"]
    margin = models.describe(m)["receptive_radius"]

    def plan_of(img):
        return rec.make_plan(*img.shape[:2], 2 * margin + 16, margin, 1, "crop")

    single = rec.reconstruct(m, image, plan_of(image))
    ensembled = rec.self_ensemble(m, image, plan_of, batch_size=4)
    turns = [np.ascontiguousarray(images.dihedral(image, k)) for k in range(8)]
    outs = [images.undo_dihedral(whole_image(m, t, plan_of(t)), k) for k, t in enumerate(turns)]
    expected = np.mean(outs, axis=0)
    assert ensembled.shape == image.shape
    assert np.abs(ensembled - expected).max() < 1e-4
    assert np.abs(ensembled - single).max() > 1e-3  # an untrained network is not symmetric


def test_metrics_of_identical_images():
    image = IMAGES["real photo"]
    m = rec.metrics(image, image)
    assert m["mse"] == 0 and m["ssim"] == pytest.approx(1.0) and m["psnr"] == float("inf")


def _blur():
    import keras

    # A real Keras model with a known reach: its zero padding darkens tile edges, like the seams
    # of the blog post's tiles.
    conv = keras.layers.DepthwiseConv2D(5, padding="same", use_bias=False)
    model = keras.Sequential([keras.Input((None, None, 3)), conv])
    conv.set_weights([np.full((5, 5, 3, 1), 1 / 25, np.float32)])
    return model


def test_seam_ratio_shows_naive_seams_and_none_in_crop_mode():
    image = sample("astronaut.png", (100, 100, 340, 300))
    blur = _blur()
    ratios = {}
    for mode in ("naive", "crop", "blend"):
        plan = rec.make_plan(*image.shape[:2], 48, 4, 1, mode)
        rebuilt = rec.to_uint8(rec.reconstruct(blur, image, plan, batch_size=4))
        ratios[mode] = rec.seam_ratio(image, rebuilt, plan)
    assert ratios["naive"] > 1.5
    assert 0.8 < ratios["crop"] < 1.2
    assert ratios["blend"] < ratios["naive"]


def test_seam_ratio_is_none_for_a_single_tile():
    image = sample("coffee.png", (0, 0, 20, 20))
    plan = rec.make_plan(20, 20, 32, 4, 1, "crop")
    assert rec.seam_ratio(image, image, plan) is None


def test_denoise_input_is_noisy_and_fixed_by_the_image_id():
    image = sample("coffee.png", (0, 0, 64, 64))
    task = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
    a = rec.model_input(image, "coffee.png", task)
    assert np.array_equal(a, rec.model_input(image, "coffee.png", task))
    assert 15 < rec.metrics(image, a)["psnr"] < 25
    assert rec.model_input(image, "coffee.png", {"kind": "reconstruct"}) is image


def test_strip_metrics_equal_scikit_images_whole_image_figures():
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

    clean = sample("hubble_deep_field.jpg", (0, 0, 301, 263))
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(
        np.uint8
    )
    got = rec.metrics(clean, noisy, strip=40)
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255))
    assert got["ssim"] == pytest.approx(
        structural_similarity(clean, noisy, channel_axis=2, data_range=255), abs=1e-9
    )
    assert got["mse"] == pytest.approx(mean_squared_error(clean / 255, noisy / 255))
