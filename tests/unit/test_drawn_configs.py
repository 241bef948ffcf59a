"""Configurations drawn from the schema (tests/drawn_configs.py), checked in this process as the
Snakefile checks them: each is accepted or refused with one line, and an accepted one holds none
of the settings that would only fail inside a job."""

import math

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tessera import settings
from tests.conftest import tiny_images
from tests.drawn_configs import SCHEMA, SCHEMA_FILE, check_in_process, configs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("drawn") / "images")


def trips_a_job(c):
    """What a job would trip on, for an accepted configuration (with its defaults filled in)."""
    task, train = c["task"], c["train"]
    if task["kind"] == "denoise" and task["noise"] == "salt_pepper" and task["rate"] == 0:
        return "salt_pepper noise at rate 0"
    if train["batch_size"] % train["gpus"]:
        return "train.gpus does not divide train.batch_size"
    if not c["results"].strip() or not c["logs"].strip():
        return "an empty results or logs folder"
    for rule, (mb, _) in settings.memory_mb(c).items():
        if mb > settings.MEM_MB[rule]:
            return f"the {rule} job needs {mb:.0f} MB"
    return None


# 400 examples of a few milliseconds each; derandomized, so a run is repeatable.
@hsettings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_drawn_config_is_accepted_or_refused_in_one_line(folder, data):
    config = data.draw(configs(folder))
    message = check_in_process(config)
    if message is not None:
        assert message.strip() and "\n" not in message, message
        return
    from snakemake.utils import validate

    # as the Snakefile reads it: a value given as text (--config key=...) parsed first
    settings.coerce(config, SCHEMA)
    validate(config, str(SCHEMA_FILE))
    grid = config["grid"]
    names = [f"p{i}" for i in range(math.prod(len(v) for v in grid.values()))]
    overrides = {**settings.grid_overrides(grid, names), **config["variants"]}
    for c in [config, *settings.variant_configs(config, SCHEMA, overrides).values()]:
        assert trips_a_job(c) is None, (trips_a_job(c), config)
