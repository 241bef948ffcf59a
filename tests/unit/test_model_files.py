"""Loading a trained model: the network is built from summary.json and only the weights are read
from the .keras archive, so a crafted archive cannot run code; HDF5 files are refused."""

import json
import zipfile

import numpy as np
from PIL import Image
import pytest

from tessera import TesseraError, apply, models
from tessera import reconstruct as rec
from tests.conftest import sample


def _trained(folder, preset="compact", precision="float32"):
    """A model.keras and summary.json as training writes them (weights from the seed)."""
    import keras

    keras.utils.set_random_seed(0)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        net = models.build(preset)
    finally:
        keras.config.set_dtype_policy(before)
    folder.mkdir(parents=True, exist_ok=True)
    net.save(folder / "model.keras")
    summary = {
        "preset": preset,
        **models.describe(net),
        "task": {"kind": "reconstruct"},
        "precision": precision,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder / "model.keras", net


def _one_line(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    return message


def _crafted_config(marker):
    """config.json of a model whose Lambda layer writes `marker` as soon as the model is built,
    which is what deserialising the archive's config does."""
    import keras

    run = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]")
    x = inp = keras.Input((None, None, 3))
    x = keras.layers.Lambda(run)(x)
    crafted = keras.Model(inp, keras.layers.Conv2D(3, 1)(x))
    marker.unlink()  # building it here ran it once
    return json.dumps(keras.saving.serialize_keras_object(crafted))


def test_a_crafted_config_in_the_archive_is_never_deserialised(tmp_path):
    import keras

    path, net = _trained(tmp_path / "m")
    marker = tmp_path / "code-ran"
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["config.json"] = _crafted_config(marker).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)

    model, summary = apply.load(path)
    x = sample("coffee.png", (0, 0, 32, 32))[None].astype(np.float32) / 255
    # the same network and weights on the same CPU: equal up to kernel rounding
    np.testing.assert_allclose(model(x), net(x), atol=1e-5)
    assert not marker.exists()
    assert [type(layer).__name__ for layer in model.layers] == [
        type(layer).__name__ for layer in net.layers
    ]

    # The crafted file is real: loading it the way Keras loads a whole model, with safe_mode off,
    # runs its code.
    with pytest.raises(Exception):
        keras.saving.load_model(path, compile=False, safe_mode=False)
    assert marker.read_text() == "ran"


def test_an_hdf5_model_is_refused_in_one_line(tmp_path):
    path, net = _trained(tmp_path / "m")
    h5 = tmp_path / "m" / "model.h5"
    net.save(h5)  # Keras' legacy format
    disguised = tmp_path / "d" / "model.keras"
    disguised.parent.mkdir()
    disguised.write_bytes(h5.read_bytes())
    (disguised.parent / "summary.json").write_text((path.parent / "summary.json").read_text())
    for bad in (h5, disguised):
        with pytest.raises(TesseraError) as error:
            apply.load(bad, path.parent / "summary.json")
        assert "HDF5" in _one_line(error, bad)
        with pytest.raises(TesseraError) as error:
            rec.load(bad, path.parent / "summary.json")
        assert "HDF5" in _one_line(error, bad)


def test_weights_that_do_not_fit_the_summarys_network_are_one_line(tmp_path):
    path, _ = _trained(tmp_path / "m")
    summary = json.loads((path.parent / "summary.json").read_text())
    for spec in ("dncnn", "seed"):
        with pytest.raises(TesseraError) as error:
            models.load_trained(path, {**summary, "preset": spec})
        assert "do not fit" in _one_line(error, path)


def test_the_summarys_model_spec_comes_before_its_preset_name(tmp_path):
    path, net = _trained(tmp_path / "m", preset="dncnn")
    summary = json.loads((path.parent / "summary.json").read_text())
    model = models.load_trained(path, {**summary, "preset": "compact", "model": "dncnn"})
    assert model.count_params() == net.count_params()


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_reconstruction_is_what_the_whole_saved_model_gives(tmp_path, precision):
    import keras

    path, _ = _trained(tmp_path / "m", precision=precision)
    model, summary = rec.load(path, path.parent / "summary.json")
    # built under the precision it trained with, as loading the whole model restores it
    assert {layer.dtype_policy.name for layer in model.layers[1:]} == {precision}
    whole = keras.saving.load_model(path, compile=False)
    image = sample("chelsea.png", (0, 0, 100, 72))
    ours, _ = rec.tiled(model, image, summary, 32, None, "crop", 4)
    theirs, _ = rec.tiled(whole, image, summary, 32, None, "crop", 4)
    # The same layers and weights on the same CPU; the tolerance covers kernel summation order,
    # in bfloat16 its 8-bit mantissa (about 0.4% of values near 1).
    np.testing.assert_allclose(ours, theirs, atol=1e-5 if precision == "float32" else 1e-2)


# A network of one's own whose file leaves a mark each time its code runs (imported).
OWN = """
import pathlib

import keras

pathlib.Path(__file__).with_name("code-ran").write_text("ran")


def build(width=4):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    return keras.Model(inp, keras.layers.Conv2D(3, 1)(x))
"""


def _trained_from_a_file(folder):
    """A model.keras and summary.json as training writes them for model.file, the file beside."""
    (folder / "nets").mkdir(parents=True)
    (folder / "nets" / "own.py").write_text(OWN)
    spec = models.normalise({"file": str(folder / "nets" / "own.py")})
    net = models.build(spec)
    net.save(folder / "model.keras")
    summary = {"model": spec, **models.describe(net), "task": {"kind": "reconstruct"}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "nets" / "code-ran").unlink()  # building it here ran it once
    return folder / "model.keras", net


def test_a_network_from_a_file_runs_only_when_the_caller_names_the_file(tmp_path):
    path, net = _trained_from_a_file(tmp_path / "copied")
    marker = tmp_path / "copied" / "nets" / "code-ran"
    for load in (apply.load, lambda p: rec.load(p, p.parent / "summary.json")):
        with pytest.raises(TesseraError) as error:
            load(path)
        assert "name the file (tessera apply --model-file PATH" in _one_line(error, path)
        assert not marker.exists()

    # named where the user keeps it: that file's code builds the network (the same code)
    mine = tmp_path / "mine.py"
    mine.write_text(OWN.replace("code-ran", "mine-ran"))
    with pytest.raises(TesseraError, match="has changed since the model was trained"):
        apply.load(path, model_file=mine)
    mine.write_text(OWN)
    model, _ = apply.load(path, model_file=mine)
    assert (tmp_path / "code-ran").read_text() == "ran" and not marker.exists()
    x = sample("coffee.png", (0, 0, 32, 32))[None].astype(np.float32) / 255
    np.testing.assert_allclose(model(x), net(x), atol=1e-5)  # the same weights, kernel rounding


def test_the_command_line_names_the_model_file_or_refuses_before_keras_runs_it(tmp_path, capsys):
    from tessera.__main__ import main

    path, _ = _trained_from_a_file(tmp_path / "copied")
    Image.fromarray(sample("coffee.png", (0, 0, 40, 32))).save(tmp_path / "photo.png")
    args = [str(path), str(tmp_path / "photo.png"), str(tmp_path / "out"), "--tile", "16"]
    assert main(["apply", *args]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("tessera apply: error: model '") and "--model-file PATH" in line
    assert not (tmp_path / "copied" / "nets" / "code-ran").exists()
    named = ["--model-file", str(tmp_path / "copied" / "nets" / "own.py")]
    assert main(["apply", *args, *named]) == 0
    assert (tmp_path / "out" / "photo.png.png").is_file()  # named by the image id


@pytest.mark.parametrize(
    "spec",
    [
        {"preset": "dncnn", "depth": 100000, "hash": "0123456789ab"},
        {"preset": "dncnn", "depth": 100000},
        {"preset": "compact", "width": -1, "hash": "0123456789ab"},
    ],
)
def test_preset_arguments_read_from_a_summary_are_checked(tmp_path, spec):
    # a hash key once skipped the checks, and a 100000-layer network was built
    path, _ = _trained(tmp_path / "m", preset="dncnn")
    summary = json.loads((path.parent / "summary.json").read_text())
    with pytest.raises(TesseraError) as error:
        models.load_trained(path, {**summary, "model": spec})
    message = _one_line(error, path)
    assert (
        "model.depth: 100000 is not allowed" in message
        or "model.hash: unknown" in message
        or "model.width: -1" in message
    )
