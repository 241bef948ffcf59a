"""Configurations drawn from the schema (tests/drawn_configs.py), checked in this process as the
Snakefile checks them: each is accepted or refused with one line; and for a sample of those that
plan, the jobs that decide (a training step, the tiles of one image) run without tripping."""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st
from PIL import Image

from tessera import models
from tests.conftest import sample, tiny_images
from tests.drawn_configs import (
    check_in_process,
    configs,
    host_side,
    job_configs,
    job_settings,
    run_jobs,
    trainer_side,
    whole_configs,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("drawn") / "images")


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
    else:
        assert whole_configs(config)  # the run's, and each variant's, as the jobs get them


# Drawn configurations of the sections the jobs are given, planned in this process (many are
# refused: settings that do not fit together). Of those that plan, the training's host side and
# network run for every one (a fraction of a second each), a training step and the tiles for a
# sample (1 to 3 s each on 2 shared cores): the whole test takes about a minute.
JOB_DRAWS = 200
JOB_SAMPLE = 16


def planned_job_configs(folder):
    """The whole configurations of drawn runs that plan, one of each set of job settings, in the
    order drawn."""
    found = {}

    @hsettings(
        max_examples=JOB_DRAWS,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def draw(data):
        config = data.draw(job_configs(folder))
        if check_in_process(config) is None:
            for c in whole_configs(config):
                found.setdefault(json.dumps(job_settings(c), sort_keys=True, default=str), c)

    draw()
    return list(found.values())


def stratum(c):
    """What most changes the jobs' code paths: the task and its chain of damage, the network and
    its padding, the tiling's mode and whether its margin is given."""
    spec, task, rec = models.normalise(c["model"]), c["task"], c["reconstruct"]
    chain = tuple(d["kind"] for d in task["degradations"]) if task["kind"] == "restore" else ()
    return (
        task["kind"],
        chain,
        spec.get("preset"),
        spec.get("padding"),
        rec["mode"],
        rec["margin"] is None,
    )


def spread(found, k):
    """k configurations, taken in turn from each stratum (in the order first drawn): as many
    different jobs as the sample can hold."""
    strata = {}
    for c in found:
        strata.setdefault(stratum(c), []).append(c)
    turns = [c for depth in range(max(map(len, strata.values()), default=0))
             for group in strata.values() if depth < len(group) for c in [group[depth]]]  # fmt: skip
    return turns[:k]


@pytest.mark.slow
def test_the_jobs_of_drawn_configs_that_plan_do_not_trip(folder, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(sample("coffee.png", (0, 0, 40, 48))).save(photo)
    found = planned_job_configs(folder)
    chosen = spread(found, JOB_SAMPLE)
    # for every one, the host side of training (numpy, milliseconds) and its network and trainer
    # made (a fraction of a second); for a sample, a training step and the tiles too
    endings, tripped = Counter(), []
    for c in found:
        ended = [e for e in (host_side(c), trainer_side(c)) if e]
        if not ended and any(c is x for x in chosen):
            ended = [e for e in [run_jobs(c, tmp_path, photo)] if e]
        endings.update(ended or ["ran"])
        if ended:
            settings = {k: c[k] for k in ("model", "patches", "task", "train", "reconstruct")}
            tripped.append(f"{'; '.join(ended)}\n    {settings}")
    print(len(found), "planned,", len(chosen), "run whole:", dict(endings))
    assert len(chosen) == JOB_SAMPLE and not tripped, (dict(endings), *tripped)
