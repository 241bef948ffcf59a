"""Settings each allowed by the schema but that a job would trip on: settings.check() refuses
them with one line naming the key, and lets every shipped configuration through."""

import copy

import pytest
import yaml
from snakemake.utils import validate

from tessera import TesseraError, settings
from tests.conftest import REPO
from tests.drawn_configs import SCHEMA, SCHEMA_FILE

HOLES = {"kind": "holes", "size": [2, 6], "count": [1, 2]}
SHIPPED = sorted(p for p in (REPO / "config").glob("*.yaml") if p.name != "config.schema.yaml")


def filled(*changes):
    """config/config.yaml with its defaults filled in and the changes (section, {key: value})."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section, values in changes:
        config[section] = (
            {**config.get(section, {}), **values} if isinstance(values, dict) else values
        )
    validate(config, str(SCHEMA_FILE))
    return config


@pytest.mark.parametrize(
    "changes, expected",
    [
        ([("task", {"kind": "denoise", "noise": "salt_pepper", "rate": 0})], "task.rate: 0 adds"),
        ([("results", "")], "results: an empty path is not allowed"),
        ([("logs", "  ")], "logs: an empty path is not allowed"),
        ([("results", ".")], "results: '.' holds the images folder 'resources/sample_images'"),
        ([("train", {"gpus": 3})], "train.batch_size: 64 is not a multiple of train.gpus (3)"),
        (
            [("train", {"gpus": 128})],
            "train.batch_size: 64 is not a multiple of train.gpus (128): each device gets an "
            "equal share of every batch; use 128",
        ),
        ([("reconstruct", {"tile": 4096})], "reconstruct.tile: 4096 makes the reconstruct job"),
        ([("reconstruct", {"batch_size": 4096})], "reconstruct.batch_size: 4096 makes the rec"),
        (
            [("patches", {"size": 512}), ("train", {"batch_size": 1})],
            "patches.size: 512 makes the train job need about 24,878 MB",
        ),
        ([("split", {"max_val_patches": 3 * 10**6})], "split.max_val_patches: 3000000 makes"),
        (
            [
                ("model", {"preset": "seed"}),
                ("task", {"kind": "restore", "degradations": [HOLES]}),
            ],
            "model.preset: seed is the blog post's network layer for layer and takes no mask",
        ),
        (
            [("task", {"kind": "denoise", "noise": "salt_pepper", "rate": 1e-300})],
            "task.rate: 1e-300 adds no salt_pepper noise",
        ),
        (
            [("task", {"kind": "upscale", "factor": 3}), ("model", {"preset": "dncnn"})],
            "patches.size: 32 is not a multiple of 3: task.factor 3 shrinks each patch to the "
            "network's input, whose sides must be multiples of 1; use 30 or 33"
        ),
        (
            [
                ("task", {"kind": "upscale", "factor": 2}),
                ("model", {"preset": "dncnn", "padding": "valid"}),
            ],
            "patches.size: 32 (shrunk 2 times by the task) leaves no output for dncnn (padding "
            "valid), whose output is 16 pixels smaller than its input; use patches larger than 32",
        ),
        # an enlarging network for a task whose output is its input's size
        (
            [("model", {"preset": "dncnn", "factor": 2})],
            "model.factor: 2 makes the network enlarge the image, which only task.kind upscale "
            "trains (with task.factor); leave it out for task.kind reconstruct",
        ),
        # a range given high first: its middle is fine, the training's draws are not
        (
            [("task", {"kind": "restore", "degradations": [{"kind": "jpeg", "quality": [30, 10]}]})],
            "task.degradations.0.quality: [30, 10] gives the high end first; write the range low "
            "first, [10, 30]",
        ),
        (
            [("task", {"kind": "restore", "degradations": [{"kind": "downscale", "factor": [4, 2]}, HOLES]})],
            "task.degradations.0.factor: [4, 2] gives the high end first",
        ),
        # 17 valid convolutions trim 34 pixels: nothing is left of a 32-pixel patch
        (
            [("model", {"preset": "dncnn", "padding": "valid", "depth": 17})],
            "patches.size: 32 leaves no output for dncnn (depth 17, padding valid), whose output is "
            "34 pixels smaller than its input; use patches larger than 34",
        ),
        (
            [("model", {"preset": "dncnn", "padding": "valid", "depth": 4}), ("reconstruct", {"margin": 2})],
            "reconstruct.margin: 2 is less than the output border 4 of dncnn (depth 4, padding valid)",
        ),
        (
            [("model", {"preset": "dncnn", "padding": "valid", "depth": 8}), ("reconstruct", {"mode": "naive", "tile": 16})],
            "reconstruct.tile: 16 leaves no whole centre for dncnn (padding valid), whose tiles "
            "lose 8 pixels on each side (its output border); use a tile of at least 17",
        ),
    ],
)  # fmt: skip
def test_a_setting_a_job_would_trip_on_is_named(changes, expected):
    config = filled(*changes)
    settings.validate(copy.deepcopy(config), SCHEMA)  # each value is fine alone
    with pytest.raises(TesseraError) as error:
        settings.check(config)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value), error.value


def test_a_default_tile_too_small_for_a_far_seeing_network_passes_the_checks():
    # a U-Net of 5 levels sees 219 pixels: its tiles are widened (test_geometry), not refused
    settings.check(filled(("model", {"preset": "unet", "levels": 5})))
    settings.check(filled(("task", {"kind": "restore", "degradations": [HOLES]})))


def test_the_memory_check_follows_the_jobs_memory():
    config = filled(("reconstruct", {"tile": 2048}))
    estimate = settings.memory_mb(config)["reconstruct"][0]
    assert 4000 < estimate < 64000  # 8 tiles of 2048x2048 at 300 bytes a pixel: about 11 GB
    with pytest.raises(TesseraError, match="over its mem_mb of 4000"):
        settings.check(config)
    settings.check(config, {"reconstruct": 64000})


def as_the_snakefile_reads(*layers):
    """The config the Snakefile sees for config files given one over the other (config/config.yaml
    first, then each --configfile): merged by Snakemake's own update_config, key by key at every
    depth, the model section layered as the Snakefile layers it, then read and filled in."""
    from snakemake.utils import update_config

    config = {}
    for layer in layers:
        update_config(config, copy.deepcopy(layer))
    config["model"] = settings.layered_model(layers)
    settings.coerce(config, SCHEMA)
    settings.validate(config, SCHEMA)
    validate(config, str(SCHEMA_FILE))
    return config


DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_a_config_file_given_over_another_changes_only_the_keys_it_names():
    # a section given again keeps the keys it does not name (split.seed is 17, not the default 0)
    config = as_the_snakefile_reads(DEFAULT, {"split": {"max_val_patches": 100}})
    assert config["split"] == {"val_fraction": 0.3, "seed": 17, "max_val_patches": 100}
    config = as_the_snakefile_reads(DEFAULT, {"model": {"width": 16}})
    assert config["model"] == {"preset": "compact", "width": 16, "init": None}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_passes_every_check(path):
    config = as_the_snakefile_reads(DEFAULT, yaml.safe_load(path.read_text()))
    settings.check(config)
    settings.variant_configs(config, SCHEMA, config["variants"])
