"""Settings the schema lets through but a job would trip on stop `snakemake -n` with one line
naming the key; configurations drawn from the schema plan or stop so; and the workflow's own
outputs are never read back as images."""

import re
import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings

from tessera import settings
from tests.conftest import SAMPLES, snakemake, tiny_config, tiny_images
from tests.drawn_configs import configs, write
from tests.workflow.test_real_folders import one_error_line

SALT = {"kind": "denoise", "noise": "salt_pepper", "rate": 0}
HOLES = {"kind": "holes", "size": [2, 6], "count": [1, 2]}
NOISE = {"kind": "noise", "sigma": [5, 20]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("checks") / "images")


def dry_run(work, folder, *args, **changes):
    tiny_config(work / "tiny.yaml", folder, **changes)
    return snakemake(work, "-n", "--configfile", str(work / "tiny.yaml"), *args, check=False)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"task": SALT}, "task.rate: 0 adds no salt_pepper noise"),
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
        (
            {"task": {"kind": "restore", "degradations": [HOLES, NOISE]}},
            "task.degradations[0]: holes the network is told of (mask: true) must come after",
        ),
        (
            {"task": {"kind": "upscale", "factor": 3}, "model": {"preset": "dncnn"}},
            "patches.size: 16 is not a multiple of 3: task.factor 3 shrinks",
        ),
        (
            {"task": {"kind": "upscale"}},
            "model.preset: compact cannot enlarge an image (task.kind upscale); use dncnn",
        ),
        # once found only by the training job: 8 valid convolutions leave nothing of 16 pixels
        (
            {"model": {"preset": "dncnn", "padding": "valid"}},
            "patches.size: 16 leaves no output for dncnn (padding valid)",
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


# Each example runs a real `snakemake -n` (3 to 7 s on 2 shared cores): 15 of them, the same ones
# every run, and two written out (about 2 minutes). Planning reads the sample folder and writes nothing into it.
@hsettings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@example({"images": str(SAMPLES), "grid": {"train.epochs": 3}})  # once a KeyError
@example({"images": str(SAMPLES), "grid": {"train.learning_rate": [1e-3, 2e-3]}, "task": SALT})
@given(configs(SAMPLES))
def test_a_drawn_config_plans_or_stops_with_one_line(tmp_path_factory, config):
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


def test_a_model_name_that_is_no_variant_lists_the_variants(tmp_path, folder):
    tiny_config(tmp_path / "tiny.yaml", folder, apply={"images": str(folder), "model": "compact"})
    proc = snakemake(
        tmp_path, "apply", "-n", "--configfile", str(tmp_path / "tiny.yaml"), check=False
    )
    line = one_error_line(proc)
    assert line.startswith("apply.model: 'compact' is neither a variant of this run (it has none)")


def test_masks_for_a_model_not_told_of_holes_stop_before_any_job(tmp_path, folder):
    apply = {"images": str(folder), "masks": str(folder)}
    tiny_config(tmp_path / "tiny.yaml", folder, apply=apply)
    proc = snakemake(
        tmp_path, "-n", "apply", "--configfile", str(tmp_path / "tiny.yaml"), check=False
    )
    line = one_error_line(proc)
    assert line.startswith("apply.masks: masks '"), line
    assert "was not trained to fill holes" in line, line
