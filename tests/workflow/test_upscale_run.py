"""Super-resolution through the real workflow: a short training enlarges held-out photos better
than bicubic, a network whose output is bicubic shifted by one pixel fails the same check, the
report shows the small input and its bicubic enlargement, and apply enlarges a folder of small
images."""

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tessera.models.layers import upscale_layers
from tessera.tasks.upscale import enlarge, shrink
from tests.conftest import REPO, small_photos, snakemake, tiny_config

pytestmark = pytest.mark.slow

FACTOR = 2
TASK = {"kind": "upscale", "factor": FACTOR}
# The check: on the held-out photo, the network's PSNR is at least this far above bicubic's. A
# few hundred steps of a small network gain 0.5 to 1 dB on these photos; a network that learned
# nothing is bicubic within a few hundredths of a dB.
GAIN_DB = 0.25


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("upscale")
    photos = small_photos(work / "photos", side=160)
    config = tiny_config(
        work / "config.yaml",
        photos,
        task=TASK,
        model={"preset": "dncnn", "depth": 5, "width": 24},
        patches={"size": 32, "stride": 8},
        train={"epochs": 4, "batch_size": 16, "loss": "charbonnier", "warmup": 50},
    )
    snakemake(work, "--configfile", str(config), timeout=900)
    return work, photos


def gain(truth, output, small):
    """The learning check: PSNR of output over PSNR of small's bicubic enlargement, on truth."""

    def psnr(a):
        mse = np.mean((truth.astype(np.float64) - a.astype(np.float64)) ** 2)
        return 10 * np.log10(255**2 / mse)

    return psnr(output) - psnr(enlarge(small, FACTOR))


def held_out(work, photos):
    metrics = pd.read_csv(work / "results" / "report" / "metrics.tsv", sep="\t")
    (name,) = metrics.image[metrics.split == "val"]
    truth = np.asarray(Image.open(photos / name).convert("RGB"))
    truth = truth[: truth.shape[0] // FACTOR * FACTOR, : truth.shape[1] // FACTOR * FACTOR]
    return name, truth, shrink(truth, FACTOR), metrics


def test_the_network_enlarges_held_out_photos_better_than_bicubic(run):
    work, photos = run
    name, truth, small, metrics = held_out(work, photos)
    rebuilt = np.asarray(Image.open(work / "results" / "reconstructed" / f"{name}.png"))
    assert rebuilt.shape == truth.shape
    assert gain(truth, rebuilt, small) > GAIN_DB
    # the workflow's own figures say the same: its input row is bicubic
    row = metrics.set_index("image").loc[name]
    assert row.psnr - row.psnr_input > GAIN_DB
    summary = json.loads((work / "results" / "model" / "summary.json").read_text())
    assert summary["flags"] == [] and summary["output_scale"] == FACTOR


def test_bicubic_shifted_by_one_pixel_fails_the_same_check(run):
    # sharp and of the right size, but misplaced: what a misaligned training pair would teach
    work, photos = run
    _, truth, small, _ = held_out(work, photos)
    inp = keras.Input((None, None, 3))
    shifted = keras.layers.ZeroPadding2D(((1, 0), (1, 0)))(upscale_layers()(FACTOR)(inp))
    net = keras.Model(inp, keras.layers.Cropping2D(((0, 1), (0, 1)))(shifted))
    out = np.asarray(net(small[None].astype(np.float32) / 255))[0]
    out = np.clip(np.rint(out * 255), 0, 255)
    assert gain(truth, out, small) < 0


def test_the_report_shows_the_small_input_and_its_bicubic_enlargement(run):
    work, _ = run
    page = (work / "results" / "report" / "index.html").read_text()
    assert "small input" in page and "bicubic" in page and ".small.thumb.jpg" in page


def test_apply_enlarges_a_folder_of_small_images(run, tmp_path):
    work, photos = run
    small = tmp_path / "small"
    small.mkdir()
    for path in photos.iterdir():
        Image.fromarray(shrink(np.asarray(Image.open(path).convert("RGB")), FACTOR)).save(
            small / path.name
        )
    model = work / "results" / "model" / "model.keras"
    cmd = [sys.executable, "-m", "tessera", "apply", str(model), str(small), str(tmp_path / "out")]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=300)
    for path in small.iterdir():
        w, h = Image.open(path).size
        assert Image.open(tmp_path / "out" / f"{path.name}.png").size == (w * FACTOR, h * FACTOR)
