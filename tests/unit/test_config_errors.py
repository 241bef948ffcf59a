"""A bad setting reads as one line that names the key, the value given and the values allowed."""

import copy

import pytest
import yaml

from tessera import TesseraError, settings
from tests.conftest import REPO

SCHEMA = settings.load_schema(REPO / "config" / "config.schema.yaml")
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_(change):
    config = copy.deepcopy(CONFIG)
    for key, value in change.items():
        *parents, last = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return config


def message(change):
    with pytest.raises(TesseraError) as caught:
        settings.validate(with_(change), SCHEMA)
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_the_shipped_config_is_valid():
    settings.validate(copy.deepcopy(CONFIG), SCHEMA)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"patches.stride": -1}, "patches.stride: -1 is not allowed; use an integer >= 1"),
        ({"patches.size": -3}, "patches.size: -3 is not allowed; use an integer from 4 to 512"),
        ({"patches.size": "big"}, 'patches.size: "big" is not allowed; use an integer from 4'),
        ({"split.val_fraction": 1.5}, "split.val_fraction: 1.5 is not allowed; use a number > 0"),
        ({"split.val_fraction": 0}, "use a number > 0 and < 1"),
        ({"train.optimizer": "nadam"}, "use one of: adam, adamw, rmsprop, sgd, adagrad"),
        ({"reconstruct.mode": "smooth"}, 'reconstruct.mode: "smooth" is not allowed; use one of'),
        ({"reconstruct.margin": -2}, "use an integer >= 0, or null"),
        ({"max_megapixels": 0}, "max_megapixels: 0 is not allowed; use a number > 0, or null"),
        ({"recursive": "sometimes"}, 'recursive: "sometimes" is not allowed; use true or false'),
        ({"patches": 3}, "patches: 3 is not allowed; use a mapping of: size, stride"),
        ({"images": ""}, 'images: "" is not allowed; use a non-empty string'),
        ({"images": KeyError}, "images: missing; set it to a non-empty string (folder of images"),
        ({"patches.sise": 32}, "patches.sise: unknown setting; patches takes: size, stride"),
        ({"epochs": 3}, "epochs: unknown setting; the config takes: images, recursive"),
        # seeds that numpy's and Keras' generators refuse
        ({"train.seed": -1}, "train.seed: -1 is not allowed; use an integer from 0 to 4294967295"),
        ({"train.seed": 2**32}, "train.seed: 4294967296 is not allowed; use an integer from 0 to"),
        ({"patches.seed": -5}, "patches.seed: -5 is not allowed; use an integer >= 0"),
    ],
)
def test_schema_violations_name_the_key_and_the_values_allowed(change, expected):
    assert expected in message(change)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"model.preset": "huge"}, "model.preset: unknown preset 'huge'; choose one of: compact"),
        ({"patches.size": 30}, "patches.size: 30 is not a multiple of 4"),
        ({"reconstruct.tile": 30}, "reconstruct.tile: 30 is not a multiple of 4"),
        ({"reconstruct.tile": 32, "reconstruct.margin": 16}, "reconstruct.margin: tile 32 - 2 x"),
    ],
)
def test_settings_that_do_not_fit_together_are_named(change, expected):
    config = with_(change)
    settings.validate(config, SCHEMA)  # each value is fine alone
    with pytest.raises(TesseraError, match=expected.replace("(", r"\(")):
        settings.check(config)
