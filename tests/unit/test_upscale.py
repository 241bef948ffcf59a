"""Super-resolution (task upscale): the small input and its large target stay aligned through
every flip and turn, an enlarging network starts as bicubic, and it tiles exactly."""

import keras
import numpy as np
import pytest
from PIL import Image

from tessera import TesseraError, models, tasks
from tessera import reconstruct as rec
from tessera.batches import Batches, InMemory, Patches, Trainer
from tessera.tasks.upscale import enlarge, shrink
from tests.conftest import sample
from tests.reference import whole_image

FACTORS = (2, 3, 4)


def enlarger(factor):
    """A network that returns its input's bicubic enlargement, as the presets' base: the training
    step's output is then exactly what it was given, enlarged."""
    inp = keras.Input((None, None, 3))
    out = models.layers.upscale_layers()(factor)(inp)
    return keras.Model(inp, out, name="bicubic")


@pytest.mark.parametrize("factor", FACTORS)
def test_the_small_input_is_the_targets_own_downscale_after_every_flip_and_turn(factor):
    task = {"kind": "upscale", "factor": factor}
    size = 12 * factor
    patches = np.stack(
        [sample("astronaut.png", (x, 60, x + size, 60 + size)) for x in range(0, 320, 20)]
    )
    data = Batches(Patches(InMemory([patches])), len(patches), seed=1, augment_on=True, task=task)
    (x, codes, offsets), _ = data[0]
    assert len(set(codes.tolist())) > 4  # most of the 8 flips and turns are drawn
    small = {}

    class Look(keras.Model):  # records what the network is given, answers bicubic
        def call(self, given):
            small["given"] = given
            return enlarger(factor)(given)

    trainer = Trainer(enlarger(factor), size, task, seed=0)
    trainer.core = Look()
    out = np.asarray(trainer((x, codes, offsets)))
    given = np.rint(np.asarray(small["given"]) * 255)
    target = np.rint(out[..., 3:6] * 255).astype(np.uint8)
    assert given.shape == (len(x), size // factor, size // factor, 3)
    # Pillow shrinks a flipped patch as the flip of the shrunk one, but for its rounding: it
    # resamples rows, rounds to 8 bits, then columns, so a quarter turn swaps the two roundings
    ours = np.stack([shrink(t, factor) for t in target]).astype(np.float64)
    assert np.abs(given - ours).max() <= 2 and np.abs(given - ours).mean() < 0.3
    # and a shift by one small pixel, or the other flip, is far from it
    assert np.abs(given - np.roll(ours, 1, axis=1)).mean() > 5
    assert np.abs(given - ours[:, ::-1]).mean() > 5


@pytest.mark.parametrize("factor", FACTORS)
def test_the_bicubic_layer_is_pillows_bicubic_away_from_the_edges(factor):
    small = sample("coffee.png", (100, 100, 160, 148))
    ours = np.asarray(enlarger(factor)(small[None].astype(np.float32) / 255))[0] * 255
    pillow = enlarge(small, factor).astype(np.float64)
    inner = slice(3 * factor, -3 * factor)
    # Pillow rounds to 8 bits; at the edges it renormalises its taps where we mirror the image
    assert np.abs(ours - pillow)[inner, inner].max() <= 1.1
    assert np.abs(ours - pillow).mean() < 0.5


@pytest.mark.parametrize("factor", FACTORS)
def test_an_untrained_enlarging_preset_is_bicubic_within_a_fraction_of_a_level(factor):
    keras.utils.set_random_seed(0)
    net = models.build({"preset": "dncnn", "depth": 4, "width": 16, "factor": factor})
    small = sample("rocket.jpg", (200, 100, 248, 140)).astype(np.float32)[None] / 255
    out = np.asarray(net(small))[0] * 255
    base = np.asarray(enlarger(factor)(small))[0] * 255
    assert out.shape == (40 * factor, 48 * factor, 3)
    assert 0 < np.abs(out - base).max() < 0.5  # the head is small, not zero


@pytest.mark.parametrize("factor", FACTORS)
def test_an_enlarging_model_tiles_exactly_what_the_whole_image_gives(factor):
    keras.utils.set_random_seed(0)
    net = models.build({"preset": "dncnn", "depth": 4, "width": 8, "factor": factor})
    with models.woken(net):  # a trained-like head, so that the network's own reach shows
        summary = models.describe(net)
        small = sample("chelsea.png", (10, 20, 87, 71))  # 77 x 51: no side a multiple of 2
        output, plan = rec.tiled(net, small, summary, 24, None, "crop", 4)
        assert plan.count > 6 and output.shape == (51 * factor, 77 * factor, 3)
        whole = whole_image(net, small, plan)
    # the same float32 sums in tiles and on the whole canvas, up to rounding
    assert np.abs(output - whole).max() < 1e-4


def test_a_preset_that_cannot_enlarge_is_refused_with_one_line_naming_the_ones_that_can():
    with pytest.raises(TesseraError, match="compact cannot enlarge.*use dncnn"):
        models.normalise(
            {"preset": "compact", **tasks.get({"kind": "upscale"}).model_options({"factor": 2})}
        )


def test_the_patch_size_must_shrink_to_whole_pixels():
    net = models.build({"preset": "dncnn", "depth": 2, "width": 4, "factor": 3})
    with pytest.raises(TesseraError, match="patches.size: 32 is not a multiple of 3"):
        Trainer(net, 32, {"kind": "upscale", "factor": 3}, seed=0)


def test_a_rebuilt_image_is_measured_against_the_image_cut_to_the_factor(tmp_path):
    net = enlarger(3)
    summary = {"size_multiple": 1, "receptive_radius": 2, "output_scale": 3, "output_border": 0}
    path = tmp_path / "odd.png"
    Image.fromarray(sample("coffee.png", (0, 0, 301, 202))).save(path)
    task = {"kind": "upscale", "factor": 3}
    record = rec.rebuild(net, summary, path, "odd.png", tmp_path / "out.png", tile=32, task=task)
    written = np.asarray(Image.open(tmp_path / "out.png"))
    assert written.shape == (201, 300, 3)  # 202 x 301 cut to multiples of 3
    # the network is bicubic, and so is the input's own row: the same figure, but for rounding
    # and the outermost pixels (mirrored here, Pillow's taps renormalised there)
    assert record["psnr"] == pytest.approx(record["psnr_input"], abs=0.3)
