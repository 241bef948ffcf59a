"""The Python API for a trained model (tessera.api): one test per call."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from tessera import TesseraError, api, apply
from tessera import reconstruct as rec
from tests.conftest import REPO, sample
from tests.reference import whole_image

# An image of odd sides, neither a multiple of the compact network's size multiple (4) nor of
# the tile's stride: the tiling must pad and crop it.
ODD = sample("astronaut.png", (150, 40, 273, 117))  # 123 x 77


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_load_reads_a_model_folder_or_its_model_file(dncnn_model):
    model = api.load(dncnn_model)
    again = api.load(dncnn_model / "model.keras", dncnn_model / "summary.json")
    assert model.task == again.task == "denoise"
    assert model.size_multiple == 1 and model.receptive_radius > 0
    assert model.output_scale == 1 and model.model_path == dncnn_model / "model.keras"
    x = ODD[None].astype(np.float32) / 255
    # the same weights: the same outputs, up to nothing (one process, one kernel library)
    np.testing.assert_array_equal(model.network.predict_on_batch(x), again.network(x))


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_load_stops_with_one_line_naming_the_file(tmp_path, dncnn_model):
    with pytest.raises(TesseraError, match=f"model '{tmp_path / 'model.keras'}' does not exist"):
        api.load(tmp_path)
    (tmp_path / "model.keras").write_bytes((dncnn_model / "model.keras").read_bytes())
    with pytest.raises(TesseraError, match="no summary next to model"):
        api.load(tmp_path)
    summary = json.loads((dncnn_model / "summary.json").read_text())
    summary["model"] = {"preset": "compact"}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(TesseraError, match="its weights do not fit the network its summary names"):
        api.load(tmp_path)


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_restore_tiles_exactly_as_the_workflow_does(compact_model, tmp_path):
    model = api.load(compact_model)
    out = model.restore(ODD, tile=32)
    assert out.dtype == np.uint8 and out.shape == ODD.shape
    # tessera apply, the workflow's own path, writes the same image
    Image.fromarray(ODD).save(tmp_path / "odd.png")
    apply.apply_folder(
        compact_model / "model.keras", tmp_path / "odd.png", tmp_path / "out", tile=32
    )
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "out" / "odd.png.png")))
    # and with the margin covering the reach, tiles are one pass over the padded image: equal up
    # to float rounding (PROBE_RTOL of the largest value, as the geometry tests allow), which
    # moves an 8-bit value by at most one step where it falls on a rounding edge
    plan = rec.plan_for(ODD, model.summary, 32, None, "crop")
    whole = np.rint(np.clip(whole_image(model.network, ODD, plan), 0, 1) * 255)
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_restore_takes_a_pil_image_a_gray_array_and_a_file(compact_model, tmp_path):
    model = api.load(compact_model)
    expected = model.restore(ODD, tile=32)
    np.testing.assert_array_equal(model.restore(Image.fromarray(ODD), tile=32), expected)
    Image.fromarray(ODD).save(tmp_path / "odd.png")
    np.testing.assert_array_equal(model.restore(tmp_path / "odd.png", tile=32), expected)
    gray = ODD[..., 1]
    np.testing.assert_array_equal(
        model.restore(gray, tile=32), model.restore(np.stack([gray] * 3, -1), tile=32)
    )
    with pytest.raises(TesseraError, match="image: an array of float64, not uint8"):
        model.restore(ODD / 255)
    with pytest.raises(TesseraError, match="tile: 30 is not a multiple of the model's size"):
        model.restore(ODD, tile=30)


def test_restore_gives_a_larger_image_for_a_model_that_upscales(tmp_path):
    """A network of one's own that doubles the resolution: the output is twice the image's height
    and width, and tiles equal one pass over the padded image."""
    import keras

    from tessera import models

    source = tmp_path / "double.py"
    source.write_text(
        "import keras\n"
        "from keras import layers\n\n\n"
        "def build():\n"
        "    inp = keras.Input((None, None, 3))\n"
        "    x = layers.Conv2D(8, 3, padding='same', activation='relu')(inp)\n"
        "    x = layers.Conv2DTranspose(8, 3, strides=2, padding='same', activation='relu')(x)\n"
        "    return keras.Model(inp, layers.Conv2D(3, 3, padding='same')(x))\n"
    )
    spec = models.normalise({"file": str(source)})
    keras.utils.set_random_seed(0)
    network = models.build(spec)
    network.save(tmp_path / "model.keras")
    summary = {"model": spec, **models.describe(network), "task": {"kind": "reconstruct"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    model = api.load(tmp_path, network_file=source)
    assert model.output_scale == Fraction(2)
    out = model.restore(ODD, tile=32)
    assert out.shape == (2 * ODD.shape[0], 2 * ODD.shape[1], 3)
    plan = rec.plan_for(ODD, summary, 32, None, "crop")
    whole = np.rint(np.clip(whole_image(model.network, ODD, plan), 0, 1) * 255)
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1  # as above: float rounding


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_restore_keeps_the_known_pixels_of_a_model_told_the_holes(holes_model):
    model = api.load(holes_model)
    damaged = ODD.copy()
    damaged[20:30, 40:52] = 128  # the holes' gray: the network finds them by their colour
    out = model.restore(damaged, tile=64)  # its reach (the fill) needs a margin of 24
    hole = np.zeros(ODD.shape[:2], bool)
    hole[20:30, 40:52] = True
    # KeepKnown hands back the image's own pixels outside the holes, exactly
    np.testing.assert_array_equal(out[~hole], damaged[~hole])
    assert (out[hole] != 128).any()


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_default_margin_is_the_one_the_workflow_uses(compact_model):
    model = api.load(compact_model)
    margin = model.default_margin()
    assert margin >= model.receptive_radius and margin % (model.size_multiple // 2) == 0
    assert rec.plan_for(ODD, model.summary, 128, None, "crop").margin == margin


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_export_writes_a_file_onnxruntime_runs(dncnn_model, tmp_path):
    import onnxruntime

    model = api.load(dncnn_model)
    written = model.export(tmp_path / "dncnn.onnx")
    session = onnxruntime.InferenceSession(str(written))
    x = ODD[None].astype(np.float32) / 255
    # ONNX Runtime's kernels sum in another order than TensorFlow's: test_export.py's tolerance
    np.testing.assert_allclose(
        session.run(None, {"image": x})[0], model.network.predict_on_batch(x), atol=1e-3
    )


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_custom_objects_are_tessera_layers_that_plain_keras_loads_with(holes_model):
    import keras

    objects = api.custom_objects()
    assert {"HoleMask", "FillHoles", "KeepKnown"} <= set(objects)
    network = keras.saving.load_model(holes_model / "model.keras", custom_objects=objects)
    x = ODD[None, :64, :64].astype(np.float32) / 255
    ours = api.load(holes_model).network
    np.testing.assert_allclose(network(x), ours(x), atol=1e-6)  # same weights, same kernels


def test_as_rgb_turns_a_photo_upright_and_composites_alpha_as_the_workflow(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter
    Image.fromarray(ODD).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    from tessera.images import load_image

    with Image.open(tmp_path / "turned.jpg") as im:
        np.testing.assert_array_equal(api.as_rgb(im), load_image(tmp_path / "turned.jpg")[0])
    rgba = np.dstack([ODD, np.zeros(ODD.shape[:2], np.uint8)])  # all transparent
    assert (api.as_rgb(rgba) == 255).all()  # on white, as a page shows it


def test_keras_file_finds_the_model_of_a_folder(tmp_path):
    assert api.keras_file(tmp_path) == tmp_path / "model.keras"
    assert api.keras_file(tmp_path / "mine.keras") == tmp_path / "mine.keras"


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_the_api_runs_on_another_keras_backend(compact_model, tmp_path):
    """Loaded under JAX, the model trained under TensorFlow restores the same image, up to one
    8-bit step where the two kernel libraries' float rounding falls on a rounding edge."""
    pytest.importorskip("jax")
    np.save(tmp_path / "odd.npy", ODD)
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1])\n"
        "import tessera.api\n"
        "model = tessera.api.load(sys.argv[2])\n"
        "import keras; assert keras.config.backend() == 'jax'\n"
        "np.save(sys.argv[4], model.restore(np.load(sys.argv[3]), tile=32))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = tmp_path / "jax.npy"
    args = [sys.executable, "-c", script, str(REPO), str(compact_model), str(tmp_path / "odd.npy")]
    proc = subprocess.run(args + [str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = api.load(compact_model).restore(ODD, tile=32)
    assert np.abs(np.load(out).astype(int) - ours.astype(int)).max() <= 1
