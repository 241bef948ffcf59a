"""A real snakemake run of the whole workflow on three small photographs, one epoch."""

import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import REPO, snakemake, tiny_config, tiny_images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    images = tiny_images(work / "my photos")
    tiny_config(work / "tiny.yaml", images)
    first = snakemake(work, "--configfile", str(work / "tiny.yaml"))
    return work, images, first


def test_every_output_exists_and_is_well_formed(run):
    work, images, _ = run
    r = work / "results"
    names = sorted(p.name for p in images.iterdir())
    for name in names:
        patches = np.load(r / "patches" / f"{name}.npy")
        assert patches.dtype == np.uint8 and patches.shape[1:] == (16, 16, 3) and len(patches) > 0
        rebuilt = Image.open(r / "reconstructed" / f"{name}.png")
        assert rebuilt.size == Image.open(images / name).size
    split = pd.read_csv(r / "dataset" / "split.tsv", sep="\t")
    assert sorted(split.image) == names and set(split.split) == {"train", "val"}
    assert np.load(r / "dataset" / "train.npy").dtype == np.uint8
    assert (r / "model" / "model.keras").stat().st_size > 0
    history = pd.read_csv(r / "model" / "history.tsv", sep="\t")
    assert list(history.columns[:3]) == ["epoch", "loss", "val_loss"] and len(history) == 1
    summary = json.loads((r / "model" / "summary.json").read_text())
    assert {"params", "backend", "device", "patches_per_s", "epochs", "wall_s"} <= set(summary)
    metrics = pd.read_csv(r / "report" / "metrics.tsv", sep="\t")
    assert {"image", "split", "psnr", "ssim", "mse"} <= set(metrics.columns)
    assert sorted(metrics.image) == names and metrics.psnr.between(5, 80).all()
    assert pd.read_csv(r / "report" / "loss.tsv", sep="\t").shape[0] == 1
    for stage in ("train", "split", "report"):
        assert (work / "logs" / f"{stage}.log").exists()
    assert re.search(r"loss: [0-9.e-]+ - val_loss: ", (work / "logs" / "train.log").read_text())


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value and not value.startswith("#"):
                self.refs.append(value)


def test_every_file_the_report_references_exists(run):
    work, images, _ = run
    page = work / "results" / "report" / "index.html"
    parser = _Links()
    parser.feed(page.read_text())
    assert (
        len(parser.refs) >= 1 + 6 * 3
    )  # the loss plot, and thumbnail + full size of 3 kinds per image
    for ref in parser.refs:
        assert not re.match(r"^[a-z]+://", ref), ref  # viewable offline
        assert (page.parent / unquote(ref)).is_file(), ref
    text = page.read_text()
    for name in sorted(p.name for p in images.iterdir()):
        assert name in text
    assert "mean (val)" in text and "mean (train)" in text


def test_a_second_run_has_nothing_to_do(run):
    work, _, _ = run
    again = snakemake(work, "--configfile", str(work / "tiny.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_images_can_be_given_on_the_command_line(run):
    work, _, _ = run
    dry = snakemake(
        work,
        "--configfile",
        str(work / "tiny.yaml"),
        "-n",
        "--config",
        f"images={REPO / 'resources' / 'sample_images'}",
    )
    assert "patches/retina.jpg.npy" in dry.stdout


def test_a_missing_images_folder_is_one_clear_line(run, tmp_path):
    work, _, _ = run
    bad = snakemake(
        work,
        "-n",
        "--configfile",
        str(work / "tiny.yaml"),
        "--config",
        f"images={tmp_path / 'nowhere'}",
        check=False,
    )
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert (
        f"images folder '{tmp_path / 'nowhere'}' does not exist" in out
        and "--config images=" in out
    )
    assert "Traceback" not in out
