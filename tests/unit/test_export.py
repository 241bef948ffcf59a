"""Export (tessera.export, `tessera export`): ONNX, SavedModel and TFLite with free sizes, run by
onnxruntime and TensorFlow and compared with Keras' own output."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tessera import TesseraError, api, export
from tests.conftest import REPO, sample

# Exported graphs run on other kernels (ONNX Runtime's MLAS, TFLite's XNNPACK) than Keras' own
# (oneDNN), with other convolution algorithms and summation orders: on the sample denoiser trained
# by the workflow the largest difference measured was 1.03e-4 (in one value of 28,413; most are
# near 1e-5). 1e-3 is ten times that and still a quarter of an 8-bit step (1 / 255): the
# exported graph gives the same 8-bit image but where a value falls next to a rounding edge.
ATOL = 1e-3
# Two odd sizes each: any size for a network without down-sampling (dncnn), multiples of its
# size multiple (4) for the default network.
SIZES = {"dncnn_model": [(123, 77), (64, 101)], "compact_model": [(124, 76), (68, 100)]}


def odd(h, w):
    return sample("coffee.png", (100, 50, 100 + w, 50 + h))[None].astype(np.float32) / 255


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    [given] = session.get_inputs()
    assert given.name == "image" and given.shape[-1] == 3
    return session.run(None, {"image": x})[0]


def run_savedmodel(path, x):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # held: its variables go with it
    return loaded.serve(x).numpy()


def run_tflite(path, x):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # TensorFlow 2.21 calls its own interpreter deprecated
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    [given] = interpreter.get_input_details()
    interpreter.resize_tensor_input(given["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# the command from another folder than the clone's: tessera found on PYTHONPATH, as if installed
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
RUN = {"model.onnx": run_onnx, "savedmodel": run_savedmodel, "model.tflite": run_tflite}


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
@pytest.mark.parametrize("name", ["compact_model", "dncnn_model"])
@pytest.mark.parametrize("out", list(RUN))
def test_an_export_runs_at_any_size_as_keras_does(request, name, out, tmp_path):
    model = api.load(request.getfixturevalue(name))
    fmt = "savedmodel" if out == "savedmodel" else None
    written = model.export(tmp_path / out, fmt)
    for h, w in SIZES[name]:
        x = odd(h, w)
        theirs = RUN[out](written, x)
        ours = np.asarray(model.network.predict_on_batch(x))
        assert theirs.shape == ours.shape == (1, h, w, 3)
        np.testing.assert_allclose(theirs, ours, atol=ATOL)


@pytest.mark.slow
def test_tessera_layers_export(holes_model, tmp_path):
    model = api.load(holes_model)
    assert {type(x).__name__ for x in export.tessera_layers(model.network)} == {
        "HoleMask",
        "FillHoles",
        "KeepKnown",
    }
    x = odd(76, 124)
    x[:, 10:20, 30:44] = 128 / 255  # a hole, in the holes' gray
    written = model.export(tmp_path / "holes.onnx")
    np.testing.assert_allclose(run_onnx(written, x), model.network.predict_on_batch(x), atol=ATOL)


@pytest.mark.slow
def test_a_model_trained_in_bfloat16_is_exported_in_float32(dncnn_model, tmp_path):
    folder = tmp_path / "bf16"
    shutil.copytree(dncnn_model, folder)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "precision": "mixed_bfloat16"}))
    model = api.load(folder)
    assert model.network.dtype_policy.name == "mixed_bfloat16"
    written = model.export(tmp_path / "dncnn.onnx")
    x = odd(77, 123)
    float32 = api.load(folder, precision="float32").network
    np.testing.assert_allclose(run_onnx(written, x), float32.predict_on_batch(x), atol=ATOL)
    with pytest.raises(TesseraError, match="Keras exports float32 networks only"):
        export.export(model.network, tmp_path / "again.onnx")


def test_a_layer_onnx_cannot_express_stops_the_export_naming_it(tmp_path):
    import keras
    import tensorflow as tf

    class Spectrum(keras.layers.Layer):  # an FFT: tf2onnx has no conversion for it
        def call(self, x):
            return tf.abs(tf.signal.fft2d(tf.cast(x, tf.complex64)))

    inp = keras.Input((None, None, 3))
    network = keras.Model(inp, Spectrum(name="spectrum")(keras.layers.Conv2D(3, 1)(inp)))
    out = tmp_path / "spectrum.onnx"
    with pytest.raises(TesseraError) as raised:
        export.export(network, out)
    message = str(raised.value)
    assert "layer 'spectrum' (Spectrum) uses" in message and "FFT2D" in message
    assert "\n" not in message
    assert not list(tmp_path.iterdir())  # nothing left, not even a temporary file


def test_names_formats_and_backends_are_checked_before_anything_runs(tmp_path):
    assert export.format_for(tmp_path / "m.onnx") == "onnx"
    assert export.format_for(tmp_path / "m.tflite") == "tflite"
    assert export.format_for(tmp_path / "m", "savedmodel") == "savedmodel"
    with pytest.raises(TesseraError, match="say which format"):
        export.format_for(tmp_path / "m")
    with pytest.raises(TesseraError, match="a tflite file's name must end .tflite"):
        export.format_for(tmp_path / "m.onnx", "tflite")
    with pytest.raises(TesseraError, match="a SavedModel is a folder"):
        export.format_for(tmp_path / "m.onnx", "savedmodel")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(TesseraError, match="already exists: choose another name, or --overwrite"):
        export.check_output(tmp_path / "m.onnx")
    export.check_output(tmp_path / "m.onnx", overwrite=True)
    with pytest.raises(TesseraError, match="needs the tensorflow Keras backend .* KERAS_BACK"):
        export.check_backend("tflite", "jax")
    with pytest.raises(TesseraError, match="needs the tensorflow or jax Keras backend"):
        export.check_backend("onnx", "torch")
    export.check_backend("onnx", "tensorflow")  # tf2onnx and onnx are in requirements.txt
    if __import__("importlib").util.find_spec("jax2onnx") is None:
        with pytest.raises(TesseraError, match="on the jax backend needs jax2onnx"):
            export.check_backend("onnx", "jax")


def test_passes_say_what_one_pass_takes_and_how_tessera_tiles():
    summary = {"size_multiple": 4, "receptive_radius": 10, "output_scale": 1, "output_border": 0}
    lines = export.passes(summary, {"tile": 64, "ensemble": True})
    text = " ".join(lines)
    assert "multiples of 4" in text and "margin of 10" in text and "stride 44" in text
    assert "average 8 passes" in text
    plain = " ".join(export.passes({**summary, "size_multiple": 1, "output_scale": 2}))
    assert "any height and width" in plain and "2 times" in plain and "8 passes" not in plain


@pytest.mark.slow
def test_the_command_exports_and_says_how_tessera_tiles(compact_model, tmp_path):
    out = tmp_path / "exports" / "compact"
    cmd = [sys.executable, "-m", "tessera", "export", str(compact_model), str(out)]
    proc = subprocess.run(
        cmd + ["--format", "savedmodel"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out} (savedmodel)" in proc.stdout and "multiples of 4" in proc.stdout
    assert proc.stderr == ""  # TensorFlow's chatter held back
    x = odd(76, 124)
    ours = api.load(compact_model).network.predict_on_batch(x)
    np.testing.assert_allclose(run_savedmodel(out, x), ours, atol=ATOL)
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"tessera export: error: export '{out}': say which format (--format "
        "onnx|savedmodel|tflite); the name ends neither .onnx nor .tflite"
    )


def test_the_command_names_a_missing_model_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "tessera", "export", str(tmp_path / "nothing"), "m.onnx"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"tessera export: error: model '{tmp_path / 'nothing'}' does not exist"
    ]
