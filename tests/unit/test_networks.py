"""Preset arguments, the post's other networks, model files of one's own, fine-tuning from
earlier weights and TensorBoard logs."""

import numpy as np
import pytest

from tessera import TesseraError, codeversion, models, settings, train
from tests.conftest import DATA, REPO, patch_dataset, sample
from tests.unit.test_config_errors import SCHEMA, with_
from tests.unit.test_train import SETTINGS


@pytest.mark.parametrize("name, params", [("compact", 64_207), ("dncnn", 57_251), ("seed", 48_579)])
def test_a_preset_without_arguments_is_the_network_it_always_was(name, params):
    assert models.build(name).count_params() == params
    assert models.build({"preset": name}).count_params() == params


def test_dncnn_with_its_papers_arguments_is_17_layers_of_64():
    model = models.build({"preset": "dncnn", "depth": 17, "width": 64})
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 17 and {c.filters for c in convs[:-1]} == {64}
    # 3x3x3x64 + 64, fifteen 3x3x64x64 + 64, 3x3x64x3 + 3
    assert model.count_params() == 1792 + 15 * 36_928 + 1731


def test_valid_padding_gives_the_posts_32_in_24_out():
    model = models.build({"preset": "dncnn", "depth": 4, "padding": "valid"})
    assert tuple(model.compute_output_shape((1, 32, 32, 3))) == (1, 24, 24, 3)


def test_compact_arguments_change_its_width_latent_and_kernel():
    small = models.build({"preset": "compact", "width": 16, "latent": 4, "kernel": 5})
    assert small.get_layer("latent").filters == 4
    assert small.count_params() < models.build("compact").count_params()
    assert models.latent_values_per_pixel(small) == pytest.approx(4 / 16)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"preset": "compact", "widht": 8}, "model.widht: unknown argument of preset 'compact'; "
         "it takes: width (1..512, default 32), latent (1..512, default 12), kernel (1..15, default 3)"),
        ({"preset": "compact", "width": 0}, "model.width: 0 is not allowed for preset 'compact'; "
         "use an integer from 1 to 512 (default 32)"),
        ({"preset": "dncnn", "depth": "17"}, "model.depth: '17' is not allowed for preset 'dncnn'"),
        ({"preset": "dncnn", "padding": "full"}, "model.padding: 'full' is not allowed for preset "
         "'dncnn'; use one of same|valid"),
        ({"preset": "seed", "width": 8}, "model.width: unknown argument of preset 'seed'; it takes: "
         "no arguments"),
        ({"preset": "compact", "file": "x.py"}, "model.preset: a model file takes only"),
    ],
)  # fmt: skip
def test_a_bad_preset_argument_is_one_line_naming_the_key(spec, expected):
    config = with_({"model": spec})
    settings.validate(config, SCHEMA)  # the schema lets a preset's arguments through
    with pytest.raises(TesseraError) as caught:
        settings.check(config)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_variant_naming_another_preset_does_not_inherit_the_base_arguments():
    base = with_({"model": {"preset": "compact", "width": 48}})
    out = settings.variant_configs(
        base, SCHEMA, {"wide": {"model": {"latent": 6}}, "u": {"model": {"preset": "unet"}}}
    )
    assert out["wide"]["model"] == {"preset": "compact", "width": 48, "latent": 6}
    assert out["u"]["model"] == {"preset": "unet"}


@pytest.mark.parametrize("name, multiple", [("unet", 4), ("resnet", 4), ("ffdnet", 2)])
def test_the_new_presets_multiples_follow_their_arguments(name, multiple):
    assert models.declared_size_multiple(name) == multiple
    deeper = {"unet": {"levels": 3}, "resnet": {"depth": 3}, "ffdnet": {"depth": 4}}[name]
    model = models.build({"preset": name, **deeper})
    assert models.geometry(model).multiple == models.declared_size_multiple(
        {"preset": name, **deeper}
    )


def test_the_unet_concatenates_and_the_residual_network_adds_shortcuts():
    kinds = lambda m: {type(layer).__name__ for layer in m.layers}  # noqa: E731
    assert {"Concatenate", "MaxPooling2D", "UpSampling2D"} <= kinds(models.build("unet"))
    assert {"Add", "MaxPooling2D", "UpSampling2D"} <= kinds(models.build("resnet"))


def test_ffdnets_unshuffle_and_shuffle_are_exact_and_untrainable():
    model = models.build("ffdnet")
    x = sample("coffee.png", (0, 0, 64, 48)).astype(np.float32)[None] / 255
    sub = np.asarray(model.get_layer("unshuffle")(x))
    assert sub.shape == (1, 24, 32, 12)
    # channel (2 * dy + dx) * 3 + c is the sub-image of pixels (dy, dx), as depth_to_space orders them
    assert np.array_equal(sub[0, :, :, 3:6], x[0, 0::2, 1::2])
    assert np.array_equal(np.asarray(model.get_layer("shuffle")(sub)), x)
    assert {w.name for w in model.non_trainable_weights} == {"kernel"}
    assert models.layer_radius(model) == models.probe_radius(model)


GOOD = """
import keras
from keras import layers


def build(width=8):
    inp = keras.Input((None, None, 3))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inp)  # a comment
    return keras.Model(inp, layers.Conv2D(3, 1)(x))
"""


def model_file(folder, body, name="mine.py"):
    path = folder / name
    path.write_text(body)
    return {"file": str(path)}


def test_a_model_file_builds_and_is_measured_like_a_preset(tmp_path):
    spec = models.normalise({**model_file(tmp_path, GOOD), "args": {"width": 4}})
    assert spec["function"] == "build" and spec["hash"] == codeversion.file_hash(
        tmp_path / "mine.py"
    )
    model = models.build(spec)
    info = models.describe(model)
    assert info["params"] == 3 * 9 * 4 + 4 + 4 * 3 + 3
    assert info["receptive_radius"] == 1 and info["size_multiple"] == 1
    assert models.build(
        models.normalise(
            REPO / "examples" / "tiny_unet.py" and {"file": str(REPO / "examples" / "tiny_unet.py")}
        )
    )


BAD = {
    "no function": ("def other():\n    pass\n", "model.function: {path} has no function 'build'"),
    "not a model": ("def build():\n    return 3\n", "returned int, not a keras.Model"),
    "import error": ("import not_a_module_anywhere\n", "fails to import: ModuleNotFoundError"),
    "raises": ("def build():\n    raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
    "fixed size": (
        GOOD.replace("(None, None, 3)", "(32, 32, 3)"),
        "takes inputs of fixed shape (32, 32, 3)",
    ),
    "channels in": (GOOD.replace("(None, None, 3)", "(None, None, 1)"), "takes 1 channels"),
    "channels out": (GOOD.replace("Conv2D(3, 1)", "Conv2D(4, 1)"), "tessera needs 3 channels"),
    # a strided valid convolution: 64 -> 28, 128 -> 60, neither a ratio nor a border
    "odd geometry": (
        GOOD.replace("Conv2D(3, 1)", 'Conv2D(3, 9, strides=2, padding="valid")'),
        "neither a fixed multiple of the input's size nor the input's less a fixed border",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_way_a_model_file_is_wrong_is_one_line(tmp_path, kind):
    body, expected = BAD[kind]
    spec = models.normalise(model_file(tmp_path, body))
    with pytest.raises(TesseraError) as caught:
        models.build(spec)
    text = str(caught.value)
    assert expected.format(path=tmp_path / "mine.py") in text and "\n" not in text


def test_a_missing_model_file_stops_before_any_job(tmp_path):
    config = with_({"model": {"file": str(tmp_path / "nets" / "gone.py")}})
    settings.validate(config, SCHEMA)
    with pytest.raises(TesseraError, match=r"model.file: .*gone.py: no such file"):
        settings.check(config)


def test_a_model_file_changed_since_training_is_one_line_and_a_comment_is_no_change(tmp_path):
    spec = models.normalise(model_file(tmp_path, GOOD))
    (tmp_path / "mine.py").write_text(GOOD.replace("# a comment", "# explained\n\n"))
    assert models.normalise(spec)["hash"] == spec["hash"]
    models.build(spec)
    (tmp_path / "mine.py").write_text(GOOD.replace("width=8", "width=9"))
    with pytest.raises(TesseraError, match="mine.py has changed since the model was trained"):
        models.build(spec)


@pytest.fixture
def dataset(tmp_path):
    split_tsv, files = patch_dataset(tmp_path / "patches")
    return tmp_path, split_tsv, files


def run(dataset, out, **changes):
    tmp, split_tsv, files = dataset
    o = tmp / out
    settings_ = {**dict(SETTINGS, epochs=1), **changes}
    summary = train.train(
        split_tsv, files, o / "model.keras", o / "history.tsv", o / "summary.json",
        tmp / "resume", settings_, DATA,
    )  # fmt: skip
    return o, summary


def test_fine_tuning_at_learning_rate_0_keeps_the_starting_models_outputs(dataset):
    import keras

    first, _ = run(dataset, "first")
    start = str(first / "model.keras")
    tuned, summary = run(
        dataset, "tuned", model={"preset": "compact", "init": start}, learning_rate=0
    )
    assert summary["init"] == start and summary["model"]["init"] == start
    x = sample("chelsea.png", (0, 0, 64, 64)).astype(np.float32)[None] / 255
    a = keras.saving.load_model(start).predict(x, verbose=0)
    b = keras.saving.load_model(tuned / "model.keras").predict(x, verbose=0)
    # the same weights: only the kernel library's summation order could differ (float32 noise)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # and training from them at a real learning rate does change them
    moved, _ = run(dataset, "moved", model={"preset": "compact", "init": start})
    c = keras.saving.load_model(moved / "model.keras").predict(x, verbose=0)
    assert np.abs(c - a).max() > 1e-3


def test_starting_weights_of_another_network_are_one_line_saying_how_they_differ(dataset):
    first, _ = run(dataset, "first")
    with pytest.raises(TesseraError) as caught:
        run(
            dataset,
            "other",
            model={"preset": "compact", "width": 16, "init": str(first / "model.keras")},
        )
    text = str(caught.value)
    assert "\n" not in text
    assert "is another network: its layer 1 with weights is Conv2D [(3, 3, 3, 32), (32,)]" in text
    assert "this network's is Conv2D [(3, 3, 3, 16), (16,)]" in text
    with pytest.raises(TesseraError, match="is not a model.keras"):
        run(dataset, "other", model={"preset": "compact", "init": str(first / "history.tsv")})


def test_training_writes_tensorboard_logs_beside_the_model(dataset):
    out, summary = run(dataset, "model", epochs=2)
    board = out / "tensorboard"
    for side in ("train", "validation"):
        assert list((board / side).glob("events.out.tfevents.*")), side
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(board / "validation")).Reload()
    losses = [e for tag in events.Tags()["tensors"] if "loss" in tag for e in events.Tensors(tag)]
    assert len(losses) == 2  # one validation loss per epoch
