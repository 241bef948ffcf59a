"""Models whose output is not their input's size: valid convolutions ("32 in, 24 out"), x2 and
/4 per side. Their geometry is read from the built model, they tile exactly, and a valid model
trains against the centre of its target."""

import json
from fractions import Fraction

import keras
import numpy as np
import pytest
from keras import Input, Sequential, layers
from PIL import Image

from tessera import TesseraError, models, train
from tessera import reconstruct as rec
from tessera.batches import Batches, InMemory, PairedLoss, Patches, Trainer, in_batches
from tests.conftest import sample
from tests.reference import whole_image


def _stack(*stack, name):
    keras.utils.set_random_seed(0)
    return Sequential([Input((None, None, 3)), *stack], name=name)


def _valid(depth=3):
    # a dncnn-like stack of valid 3x3 convolutions: `depth` pixels fewer per side
    convs = [layers.Conv2D(8, 3, activation="relu") for _ in range(depth - 1)]
    return _stack(*convs, layers.Conv2D(3, 3), name="valid")


def _x2():
    return _stack(
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.UpSampling2D(2),
        layers.Conv2D(3, 3, padding="same"),
        name="x2",
    )


def _x2_transposed():
    return _stack(
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.Conv2DTranspose(3, 4, strides=2, padding="same"),
        name="x2_transposed",
    )


def _encoder():
    # the encoder half of a learned codec: two stride-2 convolutions, a quarter per side
    return _stack(
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(3, 3, strides=2, padding="same"),
        name="encoder",
    )


def _same():
    return _stack(layers.Conv2D(3, 5, padding="same"), name="same")


NETS = {
    "same": (_same, 1, Fraction(1), 0, 2),
    "valid": (_valid, 1, Fraction(1), 3, 3),
    "x2": (_x2, 1, Fraction(2), 0, 2),
    "x2 transposed": (_x2_transposed, 1, Fraction(2), 0, 2),
    "encoder /4": (_encoder, 4, Fraction(1, 4), 0, 3),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_geometry_and_radius_are_read_from_the_built_model(name):
    build, multiple, scale, border, radius = NETS[name]
    model = build()
    geo = models.geometry(model)
    assert (geo.multiple, geo.scale, geo.border) == (multiple, scale, border)
    assert models.geometry(model).multiple == multiple
    side = 12 * multiple
    assert (
        model.predict(np.zeros((1, side, side, 3)), verbose=0).shape[1]
        == (side - 2 * geo.border) * geo.scale
    )
    # in input pixels, from the layers and from impulses alike; for the valid stack its depth
    assert models.layer_radius(model) == models.probe_radius(model) == radius
    info = models.describe(model)
    assert (info["output_scale"], info["output_border"]) == (
        int(scale) if scale.denominator == 1 else str(scale),
        border,
    )


@pytest.mark.parametrize("name", ["compact", "dncnn", "seed"])
def test_the_presets_keep_their_summary_values(name):
    # the values summary.json held before the geometry was written: same size, no border
    before = {"compact": (4, 8), "dncnn": (1, 8), "seed": (1, 9)}[name]
    info = models.describe(models.build(name))
    assert (info["size_multiple"], info["receptive_radius"]) == before
    assert (info["output_scale"], info["output_border"]) == (1, 0)


def test_an_output_of_no_fixed_geometry_is_one_line_naming_the_model():
    # cropping a fixed number of rows from the bottom only: the height shrinks, not the width
    model = _stack(layers.Cropping2D(((0, 3), (0, 0))), name="lopsided")
    with pytest.raises(TesseraError, match="model 'lopsided': its output side is neither"):
        models.geometry(model)


IMAGE = sample("astronaut.png", (150, 40, 219, 141))  # 69 x 101: no side a multiple of 4


def _plan(model, image, tile, mode="crop", margin=None):
    summary = models.describe(model)
    return rec.plan_for(image, summary, tile, margin, mode)


# blend averages whole tiles, edges included, so it is exact only where the tiles' outputs do not
# overlap: for a valid model with the margin of its border
@pytest.mark.parametrize(
    "name, mode", [(name, "crop") for name in sorted(NETS)] + [("valid", "blend")]
)
def test_tiling_equals_the_model_on_the_whole_image(name, mode):
    model = NETS[name][0]()
    plan = _plan(model, IMAGE, tile=32, mode=mode)
    tiled = rec.reconstruct(model, IMAGE, plan, batch_size=3)
    whole = whole_image(model, IMAGE, plan)
    scale = NETS[name][2]
    assert plan.count > 6 and tiled.shape == whole.shape
    assert tiled.shape[:2] == (-(-101 * scale // 1), -(-69 * scale // 1))
    # The same float32 convolutions over the same pixels, summed in another order on a tile
    # batch than on the whole canvas: they differ by a few float32 steps. PROBE_RTOL (1e-5 of the
    # output's scale) sits well above that rounding (tessera/models/geometry.py quotes the figures) and far below
    # what a misplaced tile gives (the whole output's own scale).
    assert np.abs(tiled - whole).max() <= models.PROBE_RTOL * np.abs(whole).max()


def test_a_valid_model_computes_each_output_pixel_once():
    model = _valid(depth=4)
    plan = _plan(model, IMAGE, tile=32, mode="crop")
    # the default margin is the border: each tile's whole output is its share of the image
    assert plan.margin == plan.border == 4 and plan.out_start == 0
    assert plan.out_tile == plan.out_stride == 32 - 2 * 4
    # even the blog post's naive tiling, tiles side by side, leaves no seam: the output pixels
    # at a tile's edge saw only real pixels
    naive = _plan(model, IMAGE, tile=32, mode="naive")
    tiled = rec.reconstruct(model, IMAGE, naive, batch_size=4)
    whole = whole_image(model, IMAGE, naive)
    assert np.abs(tiled - whole).max() <= models.PROBE_RTOL * np.abs(whole).max()
    # a margin below the border would need output the model does not give
    with pytest.raises(TesseraError, match="reconstruct.margin: 2 is less than .* border 4"):
        _plan(model, IMAGE, tile=32, margin=2)


def test_a_larger_margin_on_a_valid_model_still_tiles_exactly():
    model = _valid(depth=3)
    plan = _plan(model, IMAGE, tile=32, margin=5)
    assert plan.out_start == 2 and plan.out_stride == 22
    tiled = rec.reconstruct(model, IMAGE, plan, batch_size=4)
    whole = whole_image(model, IMAGE, plan)
    assert np.abs(tiled - whole).max() <= models.PROBE_RTOL * np.abs(whole).max()


def test_a_resolution_changing_rebuild_records_sizes_and_skips_the_metrics(tmp_path):
    model = _x2()
    summary = {**models.describe(model), "task": {"kind": "reconstruct"}}
    path = tmp_path / "a.png"
    Image.fromarray(IMAGE).save(path)
    record = rec.rebuild(
        model, summary, path, "a.png", tmp_path / "out.png", tmp_path / "a.json", tile=32
    )
    assert Image.open(tmp_path / "out.png").size == (138, 202)  # (width, height)
    assert (record["width"], record["height"]) == (69, 101)
    assert (record["output_width"], record["output_height"]) == (138, 202)
    assert record["psnr"] is None and record["seam_ratio"] is None
    assert "138x202" in record["note"] and "scale 2" in record["note"]
    assert json.loads((tmp_path / "a.json").read_text()) == record


def _centre_identity(border):
    # one valid convolution of side 2 * border + 1 whose only tap is its centre: the identity on
    # the patch's centre, border pixels in from each side
    side = 2 * border + 1
    conv = layers.Conv2D(3, side, use_bias=False)
    model = _stack(conv, name="centre")
    kernel = np.zeros((side, side, 3, 3), np.float32)
    kernel[border, border] = np.eye(3)
    conv.set_weights([kernel])
    return model


def test_a_valid_model_trains_against_the_centre_of_its_target():
    patches = np.stack([sample("coffee.png", (x, 40, x + 16, 56)) for x in range(0, 320, 10)])
    core = _centre_identity(border=3)
    trainer = Trainer(core, 16, {"kind": "reconstruct"}, seed=0)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0), loss=PairedLoss("mse"))
    batches = Batches(Patches(InMemory([patches])), 8, seed=0, augment_on=True)
    history = trainer.fit(batches, epochs=1, verbose=0)
    # float32 of values in 0..1 through one multiply-add per channel: exact but for rounding;
    # against the uncropped target (the patch's edge pixels) the loss would be ~1e-2
    assert history.history["loss"][-1] < 1e-10
    mean = train.evaluate(core, in_batches(patches, patches, patches, size=8), "mse")
    assert mean["model"] < 1e-10 < mean["mean_colour"]
    assert mean["ref_std"] == pytest.approx(mean["out_std"], rel=1e-5)


def test_training_refuses_a_model_of_another_scale_or_a_patch_within_its_border():
    with pytest.raises(TesseraError, match="model 'encoder': its output is 1/4 of its input"):
        Trainer(_encoder(), 16, {"kind": "reconstruct"}, seed=0)
    with pytest.raises(TesseraError, match="patches.size: 16 leaves no output"):
        Trainer(_valid(depth=8), 16, {"kind": "reconstruct"}, seed=0)


def test_a_valid_model_is_applied_at_each_images_size_and_its_summary_checked(tmp_path):
    from tessera import apply

    model = _valid(depth=4)
    summary = {**models.describe(model), "task": {"kind": "reconstruct"}}
    Image.fromarray(IMAGE).save(tmp_path / "a.png")
    record = apply.apply_image(
        model, summary, tmp_path / "a.png", "a.png", tmp_path / "out.png", tile=32
    )
    assert Image.open(tmp_path / "out.png").size == (69, 101)
    assert record["margin"] == 4 and "psnr" in record and "output_width" not in record
    # a summary that says something else than a geometry is refused by name
    model.save(tmp_path / "model.keras")
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "output_scale": "a half"}))
    with pytest.raises(TesseraError, match="has output_scale 'a half'"):
        apply.read_summary(tmp_path / "model.keras")


def test_the_default_margin_covers_radius_and_border_on_whole_output_pixels():
    assert rec.default_margin(3, 4, 0, Fraction(1, 4)) == 4  # a quarter per side: 4 pixels
    assert rec.default_margin(5, 1, 5, 1) == 5  # a valid stack: its border
    assert rec.default_margin(6, 4, 3, 1) == 6  # the stride must stay a multiple of 4
    with pytest.raises(TesseraError, match="no margin fits a model of size multiple 4"):
        rec.default_margin(1, 4, 1, Fraction(1, 2))


# Each preset at its defaults and at the ends of the arguments that shape its geometry (widths
# do not); and one with a mask of holes (128, the fill colour), whose fill comes before any
# preset's network alike (each such network takes seconds to build).
REACH = [
    ("seed", {}),
    ("compact", {"kernel": 2, "width": 2}),
    ("compact", {"kernel": 15, "width": 2}),
    ("compact", {}),
    ("dncnn", {"depth": 2, "padding": "valid"}),
    ("dncnn", {"depth": 17, "padding": "valid", "width": 2, "mask": 128}),
    ("dncnn", {"depth": 9, "width": 2}),
    ("unet", {"levels": 1, "width": 2}),
    ("unet", {"levels": 3, "width": 2}),
    ("resnet", {"depth": 1, "width": 2}),
    ("resnet", {"depth": 3, "width": 2}),
    ("ffdnet", {"depth": 2, "width": 2}),
    ("ffdnet", {"depth": 9, "width": 2}),
]


def test_every_preset_is_measured_here_and_declares_its_reach():
    assert {name for name, _ in REACH} == set(models.PRESETS)
    for name, p in models.PRESETS.items():
        assert p.border is not None and p.radius is not None, name


@pytest.mark.parametrize("name, args", REACH, ids=lambda v: str(v))
def test_the_declared_reach_is_the_built_networks(name, args):
    # what the settings' checks refuse patches and tiles by, before anything is built
    spec = {"preset": name, **args}
    model = models.build(spec)
    geo = models.geometry(model)
    assert models.declared_geometry(spec) == (
        geo.multiple,
        geo.border,
        models.receptive_radius(model, geo),
    )


def test_a_default_tile_too_small_for_the_models_reach_is_widened_and_a_set_margin_is_not():
    summary = {"size_multiple": 4, "receptive_radius": 64}
    image = np.zeros((300, 200, 3), np.uint8)
    plan = rec.plan_for(image, summary, 128, None, "crop")
    assert (plan.margin, plan.tile, plan.stride) == (64, 256, 128)  # the centre as wide as both
    assert plan.rows * plan.stride >= 300 and plan.cols * plan.stride >= 200
    # no wider than the image: one tile holds a small one
    small = rec.plan_for(image[:72, :96], summary, 128, None, "crop")
    assert (small.tile, small.stride, small.count) == (224, 96, 1)
    # the counterpart: a margin the user set is theirs, and a tile with no centre left is refused
    with pytest.raises(TesseraError, match="raise reconstruct.tile"):
        rec.plan_for(image, summary, 128, 64, "crop")
