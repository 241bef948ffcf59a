"""Settings the schema lets through but a job would trip on stop `snakemake -n` with one line
naming the key; configurations drawn from the schema plan or stop so; and the workflow's own
outputs are never read back as images."""

import re
import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from tessera import settings
from tests.conftest import snakemake, tiny_config, tiny_images
from tests.drawn_configs import configs, write
from tests.workflow.test_real_folders import one_error_line

TINY_SALT = {"kind": "denoise", "noise": "salt_pepper", "rate": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("checks") / "images")


def dry_run(work, folder, *args, **changes):
    tiny_config(work / "tiny.yaml", folder, **changes)
    return snakemake(work, "-n", "--configfile", str(work / "tiny.yaml"), *args, check=False)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"task": TINY_SALT}, "task.rate: 0 adds no salt_pepper noise"),
        ({"results": ""}, "results: an empty path is not allowed"),
        ({"logs": " "}, "logs: an empty path is not allowed"),
        ({"train": {"batch_size": 32, "gpus": 3}}, "train.batch_size: 32 is not a multiple of"),
        ({"reconstruct": {"tile": 4096}}, "reconstruct.tile: 4096 makes the reconstruct job need"),
        ({"reconstruct": {"batch_size": 16384}}, "reconstruct.batch_size: 16384 makes the"),
        (
            {"patches": {"size": 256, "stride": 256}, "split": {"max_val_patches": 100000}},
            "split.max_val_patches: 100000 makes the train job need about",
        ),
        (
            {"variants": {"v": {"train": {"batch_size": 30, "gpus": 4}}}},
            "variants.v.train.batch_size: 30 is not a multiple of train.gpus (4)",
        ),
    ],
)
def test_a_setting_a_job_would_trip_on_stops_before_any_job(tmp_path, folder, changes, expected):
    line = one_error_line(dry_run(tmp_path, folder, **changes))
    assert line.startswith(expected), line


def test_the_memory_check_and_the_rules_agree_on_mem_mb(tmp_path, folder):
    # a tile batch of about 20 GB (8 tiles of 2880x2880 at 300 bytes a pixel) passes 4000 MB,
    # and not 64000
    proc = dry_run(tmp_path, folder, reconstruct={"tile": 2880, "batch_size": 8})
    assert "over its mem_mb of 4000" in one_error_line(proc)
    proc = dry_run(
        tmp_path, folder, "--set-resources", "reconstruct:mem_mb=64000",
        reconstruct={"tile": 2880, "batch_size": 8},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    planned = dry_run(tmp_path, folder)
    train = re.search(r"rule train:.*?resources: ([^\n]*)", planned.stdout, re.S).group(1)
    assert f"mem_mb={settings.MEM_MB['train']}," in train


# Each example runs a real `snakemake -n` (about 3 to 7 s on 2 shared cores): 20 of them, the
# same ones every run, and the few that once ended in a traceback.
@hsettings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example(grid={"train.epochs": 3})  # a list-typed key given a number: a KeyError in the message
@example(grid={"train.learning_rate": [0.01, 0.02]}, task=TINY_SALT)
@given(grid=st.none(), task=st.none(), data=st.data())
def test_a_drawn_config_plans_or_stops_with_one_line(tmp_path_factory, folder, grid, task, data):
    config = data.draw(configs(folder)) if grid is None else {"images": str(folder)}
    if grid is not None:
        config.update(grid=grid, **({"task": task} if task else {}))
    work = tmp_path_factory.mktemp("drawn")
    write(work / "drawn.yaml", config)
    proc = snakemake(work, "-n", "--configfile", str(work / "drawn.yaml"), check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        assert "tessera: error:" not in out and "Traceback" not in out, out
    else:
        one_error_line(proc)


def test_results_and_logs_inside_the_images_folder_are_not_read_back(tmp_path):
    # images: . with the outputs of earlier runs in the folder it reads, and a subfolder of images
    tiny_images(tmp_path)
    (tmp_path / "kept").mkdir()
    shutil.copy(tmp_path / "coffee.png", tmp_path / "kept" / "c.png")
    for old in ("results/reconstructed/astronaut.png.png", "logs/x.png", "out/r/coffee.png"):
        (tmp_path / old).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "coffee.png", tmp_path / old)
    photos = {"astronaut.png", "coffee.png", "rocket.png", "kept/c.png"}
    # each run leaves out its own results and logs; another run's folder holds images like any
    for results, other in (
        ("results", "out/r/coffee.png"),
        ("out/r", "results/reconstructed/astronaut.png.png"),
    ):
        proc = dry_run(tmp_path, ".", results=results, logs="logs")
        assert proc.returncode == 0, proc.stderr
        images = set(re.findall(r"patches/(\S+?)\.npy", proc.stdout))
        assert images == photos | {other}, images
