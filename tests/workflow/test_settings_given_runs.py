"""Settings given as README gives them, on the command line or in a second config file, plan as
the same settings in one config file do; a grid over model files makes variants whose folders stay
under results/. Each case is one real `snakemake -n` (3 to 7 s on 2 shared cores)."""

import re

import pytest
import yaml

from tessera import settings
from tests.conftest import REPO, snakemake, tiny_images
from tests.workflow.test_real_folders import one_error_line

NET = """import keras


def build(width=8):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    return keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(x))
"""
CONFIG = str(REPO / "config" / "config.yaml")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("given")
    tiny_images(work / "images")
    (work / "nets").mkdir()
    (work / "nets" / "tiny.py").write_text(NET)
    return work


def dry_run(work, *args):
    # layered over the shipped config/config.yaml (model: {preset: compact}), as README's lines are
    return snakemake(work, "-n", "--configfile", CONFIG, *args, check=False)


def planned_ok(proc):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "tessera: error" not in out, out
    return proc.stdout


@pytest.mark.slow
def test_preset_arguments_on_the_command_line_plan(work):
    # Snakemake reads depth: 4 as the text '4'; it reads as the number a config file gives
    config = ("model={preset: dncnn, depth: 4, width: 16}", "task={kind: denoise}")
    planned_ok(dry_run(work, "--config", f"images={work / 'images'}", *config))
    out_of_range = dry_run(
        work, "--config", f"images={work / 'images'}", "model={preset: dncnn, depth: 100}"
    )
    assert one_error_line(out_of_range).startswith(
        "model.depth: 100 is not allowed for preset 'dncnn'; use an integer from 2 to 64"
    )  # fmt: skip


@pytest.mark.slow
def test_a_model_file_on_the_command_line_replaces_the_default_preset(work):
    # patches of 30 pixels: no multiple of 4, the default compact preset's size multiple, so the
    # run plans only if the network is the file alone (whose size the training job measures)
    given = ("model={file: nets/tiny.py, function: build}", "patches={size: 30, stride: 15}")
    planned_ok(dry_run(work, "--config", f"images={work / 'images'}", *given))
    merged = dry_run(work, "--config", f"images={work / 'images'}", "model={width: 8}", given[1])
    assert one_error_line(merged).startswith("patches.size: 30 is not a multiple of 4")


@pytest.mark.slow
def test_a_model_file_in_a_second_config_file_and_degradations_on_the_command_line(work):
    (work / "mine.yaml").write_text(
        yaml.safe_dump({"model": {"preset": None, "file": "nets/tiny.py", "args": {"width": 4}}})
    )
    degradations = "[{kind: jpeg, quality: [10, 30]}, {kind: blur, sigma: [0.5, 1.5]}]"
    out = planned_ok(
        snakemake(
            work, "-n", "--configfile", CONFIG, str(work / "mine.yaml"),
            "--config", f"images={work / 'images'}", "patches={size: 30, stride: 15}",
            f"task={{kind: restore, degradations: {degradations}}}",
            check=False,
        )
    )  # fmt: skip
    assert "rule train:" in out


@pytest.mark.slow
def test_a_grid_over_model_files_keeps_every_variant_folder_under_results(work):
    # an absolute path with .. in it, and a relative one climbing out of the work folder
    outside = work.parent / "elsewhere" / "wide.py"
    outside.parent.mkdir(exist_ok=True)
    outside.write_text(NET)
    files = [str(work / "nets" / ".." / "nets" / "tiny.py"), "../elsewhere/wide.py"]
    grid = {"model.file": files}
    (work / "grid.yaml").write_text(
        yaml.safe_dump({"images": str(work / "images"), "grid": grid, "patches": {"size": 32}})
    )
    out = planned_ok(dry_run(work, str(work / "grid.yaml")))
    folders = set(re.findall(r"results/([^\s,]+?)/model/model\.keras", out))
    assert folders == {"model_file~tiny", "model_file~wide"}, folders
    paths = re.findall(r"(?:results|logs)/\S+", out)
    assert paths and all(
        ".." not in p and re.match(settings.NAME_PATTERN, p.split("/")[1].rstrip(","))
        for p in paths
    ), paths


@pytest.mark.slow
def test_the_apply_target_runs_a_network_from_a_file_only_when_the_config_names_it(work):
    import json
    import zipfile

    # a model folder copied from elsewhere, whose summary names a Python file of its own
    folder = work / "copied"
    folder.mkdir()
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    summary = {
        "model": {"file": "/elsewhere/nets/evil.py", "function": "build", "args": {}},
        "size_multiple": 1, "receptive_radius": 2, "task": {"kind": "reconstruct"},
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    given = [f"images={work / 'images'}"]
    apply = {"images": str(work / "images"), "model": str(folder / "model.keras"), "output": "out"}
    refused = dry_run(work, "--config", *given, f"apply={json.dumps(apply)}")
    assert one_error_line(refused).startswith(
        f"apply.model: model '{folder / 'model.keras'}': its network is built by a Python file "
        "('/elsewhere/nets/evil.py', says its summary)"
    )
    named = {**apply, "model_file": "nets/tiny.py"}
    out = planned_ok(
        snakemake(
            work,
            "apply",
            "-n",
            "--configfile",
            CONFIG,
            "--config",
            *given,
            f"apply={json.dumps(named)}",
            check=False,
        )
    )
    assert "checkpoint apply_inputs:" in out
