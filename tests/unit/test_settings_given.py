"""Settings given on the command line read as the same settings in a config file, layered config
files make the model a user names, and every variant's name is one folder name."""

import copy

import pytest
import yaml

from tessera import TesseraError, settings
from snakemake.utils import validate

from tests.conftest import REPO
from tests.drawn_configs import SCHEMA, SCHEMA_FILE


def as_snakemake_reads(text):
    """A --config value as Snakemake reads it: YAML's base loader, every value a string."""
    return yaml.load(text, Loader=yaml.BaseLoader)


@pytest.mark.parametrize(
    "key, text, expected",
    [
        # a preset's arguments, which the schema leaves open
        (
            "model",
            "{preset: dncnn, depth: 4, width: 16, padding: valid}",
            {"preset": "dncnn", "depth": 4, "width": 16, "padding": "valid"},
        ),
        # a model file and its function's arguments
        (
            "model",
            "{file: nets/tiny.py, function: build, args: {width: 8, scale: 0.5, deep: true}}",
            {"file": "nets/tiny.py", "function": "build", "args": {"width": 8, "scale": 0.5, "deep": True}},
        ),
        ("model", "{preset: null}", {"preset": None}),
        # a list of degradations, each with its ranges
        (
            "task",
            "{kind: restore, degradations: [{kind: jpeg, quality: [10, 30]}, "
            "{kind: holes, size: [2, 6.5], count: [1, 2], mask: false}]}",
            {
                "kind": "restore",
                "degradations": [
                    {"kind": "jpeg", "quality": [10, 30]},
                    {"kind": "holes", "size": [2, 6.5], "count": [1, 2], "mask": False},
                ],
            },
        ),
        ("train", "{learning_rate: 1e-3, steps_per_epoch: null}", {"learning_rate": 0.001, "steps_per_epoch": None}),
        # text stays text where the schema asks for text, whatever it looks like
        ("apply", "{images: '2024', model: 'null'}", {"images": "2024", "model": "null"}),
    ],
)  # fmt: skip
def test_a_setting_on_the_command_line_reads_as_in_a_config_file(key, text, expected):
    given = settings.coerce({key: as_snakemake_reads(text)}, SCHEMA)
    assert given == {key: expected}
    # and as the same setting written in a config file, which the Snakefile reads so too
    assert given == settings.coerce(yaml.safe_load(f"{key}: {text}"), SCHEMA)


def test_variants_and_grids_on_the_command_line_read_by_the_settings_they_change():
    given = as_snakemake_reads(
        "{variants: {deep: {model: {preset: dncnn, depth: 12}, train: {epochs: 2}}}, "
        "grid: {train.learning_rate: [0.001, 2e-3], model.width: [8], patches.sampling: [grid]}}"
    )
    settings.coerce(given, SCHEMA)
    assert given["variants"] == {
        "deep": {"model": {"preset": "dncnn", "depth": 12}, "train": {"epochs": 2}}
    }
    assert given["grid"] == {
        "train.learning_rate": [0.001, 0.002],
        "model.width": [8],
        "patches.sampling": ["grid"],
    }  # fmt: skip


DEFAULT = {"model": {"preset": "compact"}, "train": {"epochs": 16}}


@pytest.mark.parametrize(
    "layers, expected",
    [
        # a model file over the default preset is that file alone
        ([DEFAULT, {"model": {"file": "nets/tiny.py"}}], {"file": "nets/tiny.py"}),
        ([DEFAULT, {"model": {"preset": None, "file": "nets/tiny.py"}}], {"preset": None, "file": "nets/tiny.py"}),
        # another preset drops the arguments of the one below; the same network keeps them
        ([{"model": {"preset": "dncnn", "depth": 4}}, {"model": {"preset": "unet"}}], {"preset": "unet"}),
        ([{"model": {"preset": "dncnn", "depth": 4}}, {"model": {"width": 8}}], {"preset": "dncnn", "depth": 4, "width": 8}),
        (
            [{"model": {"file": "a.py", "args": {"x": 1, "y": 2}}}, {}, {"model": {"args": {"y": 3}}}],
            {"file": "a.py", "args": {"x": 1, "y": 3}},
        ),
        ([DEFAULT, {"train": {"epochs": 2}}], {"preset": "compact"}),
        ([{"train": {}}], None),
    ],
)  # fmt: skip
def test_a_model_section_that_names_its_network_replaces_the_one_below(layers, expected):
    before = copy.deepcopy(layers)
    assert settings.layered_model(layers) == expected
    assert layers == before


def test_a_model_file_given_over_the_default_preset_passes_the_checks(tmp_path):
    net = tmp_path / "tiny.py"
    net.write_text("def build():\n    pass\n")
    config = {"images": str(tmp_path), "model": {"preset": "compact"}}
    for given in ({"file": str(net)}, {"preset": None, "file": str(net)}):
        config["model"] = settings.layered_model([config, {"model": given}])
        settings.coerce(config, SCHEMA)
        settings.validate(config, SCHEMA)
        assert settings.models.normalise(config["model"])["file"] == str(net)


def names(grid):
    """The variants' names as rules/common.smk makes them: Snakemake's Paramspace over the
    grid's labels."""
    import itertools

    import pandas as pd
    from snakemake.utils import Paramspace

    columns = [key.replace(".", "_") for key in grid]
    points = pd.DataFrame(
        list(itertools.product(*settings.grid_labels(grid).values())), columns=columns
    )
    return list(Paramspace(points, filename_params="*", param_sep="~").instance_patterns)


def test_a_grid_over_model_files_names_its_variants_by_the_files_stems():
    grid = {"model.file": ["/tmp/x/nets/../nets/tiny.py", "../../../wide.py"], "train.epochs": [2]}
    made = names(grid)
    assert made == ["model_file~tiny_train_epochs~2", "model_file~wide_train_epochs~2"]
    overrides = settings.grid_overrides(grid, made)
    assert overrides["model_file~tiny_train_epochs~2"]["model"] == {
        "file": "/tmp/x/nets/../nets/tiny.py"
    }


@pytest.mark.parametrize(
    "grid, expected",
    [
        ({"model.args": [{"width": 8}]}, "grid.model.args: {'width': 8} makes the variant name "),
        ({"train.loss": ["a/b"]}, "grid.train.loss: 'a/b' makes the variant name 'train_loss~a/b'"),
        ({"train.loss": ["x/../../.."]}, "grid.train.loss: 'x/../../..' makes the variant name"),
        ({"train.loss": ["a..b"]}, "grid.train.loss: 'a..b' makes the variant name 'train_loss~a..b', which is not one folder name (no '..')"),
        ({"train.loss": ["x" * 300]}, "grid.train.loss: 'xxx"),
        (
            {"model.file": ["a/tiny.py", "b/tiny.py"]},
            "grid.model.file: 'a/tiny.py' and 'b/tiny.py' both make the variant name "
            "'model_file~tiny'; give such variants their names under variants: instead",
        ),
        ({"train.epochs": [2, 2]}, "grid.train.epochs: a value is listed twice; list each once"),
    ],
)  # fmt: skip
def test_a_grid_that_makes_no_folder_name_is_refused_naming_its_key(grid, expected):
    with pytest.raises(TesseraError) as caught:
        settings.grid_overrides(grid, names(grid))
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), caught.value


BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
validate(BASE, str(SCHEMA_FILE))


@pytest.mark.parametrize("name", ["shared", "..", ".hidden", "a/b", "a b", "x" * 256])
def test_a_variant_name_that_is_no_folder_name_is_refused(name):
    config = copy.deepcopy(BASE)
    config["variants"] = {name: {"train": {"epochs": 2}}}
    with pytest.raises(TesseraError) as caught:
        settings.variant_configs(config, SCHEMA, config["variants"])
    assert str(caught.value).startswith(f"variants.{name}: '{name}' is "), caught.value


def test_the_schema_and_the_check_agree_on_a_variant_name():
    assert SCHEMA["properties"]["variants"]["propertyNames"]["pattern"] == settings.NAME_PATTERN
