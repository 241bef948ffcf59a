import numpy as np
import pytest

from tessera import models
from tessera import reconstruct as rec
from tests.conftest import sample


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
    assert np.abs(tiled - rec.whole(m, image, plan)).max() < 1e-4


def test_naive_tiling_differs_at_tile_borders():
    m = models.build("seed")
    image = IMAGES["real photo"]
    plan = rec.make_plan(*image.shape[:2], 32, 0, 1, "naive")
    tiled = rec.reconstruct(m, image, plan, batch_size=4)
    assert np.abs(tiled - rec.whole(m, image, plan)).max() > 1e-3


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


def test_metrics_of_identical_images():
    image = IMAGES["real photo"]
    m = rec.metrics(image, image)
    assert m["mse"] == 0 and m["ssim"] == pytest.approx(1.0) and m["psnr"] == float("inf")
