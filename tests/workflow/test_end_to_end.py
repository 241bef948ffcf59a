"""A real snakemake run of the whole workflow on four small photographs: its outputs, and that the
model learned something (test_learning_checks.py has the check's counterparts and the other
tasks')."""

import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.measure import block_reduce
from skimage.metrics import peak_signal_noise_ratio

from tests.conftest import REPO, TINY, small_photos, snakemake, tiny_config

# Ten epochs of about 500 patches (a few seconds): the trained model beats the trivial answers by
# 7 to 9 dB; an untrained one (learning rate 0) does not beat them at all.
EPOCHS = 10
# A model that learned something beats each patch's own mean colour by this much: half its
# squared error or less.
MARGIN_DB = 3.0
# A restoring model starts as the identity: any margin over its input is learned, and 0.1 dB is far
# above float noise.
RESTORE_MARGIN_DB = 0.1
# Kernel libraries sum in other orders than the default one (TensorFlow with oneDNN): a result that
# holds for one of them only is caught by training this run with TensorFlow's own (Eigen) and
# test_learning_checks.py's denoising with JAX's (XLA).
EIGEN = {"TF_ENABLE_ONEDNN_OPTS": "0"}


def workflow_run(tmp_path_factory, name, env=None, checked_only=False, **changes):
    """A real run on four small photos. checked_only: only what learning_failures reads (the
    models and the validation images' reconstructions), not the training images' reconstructions,
    the naive tiling, the baselines, report and card: a learning check's run is then about half
    its jobs, each of which starts a framework."""
    work = tmp_path_factory.mktemp(name)
    images = small_photos(work / "my photos")
    if changes.get("task", {}).get("kind") == "paired":
        images, changes["targets"] = damaged_copies(images, work / "damaged"), str(images)
    train = {"epochs": EPOCHS, **changes.pop("train", {})}
    tiny_config(work / "tiny.yaml", images, train=train, **changes)
    args = ["--configfile", str(work / "tiny.yaml")]
    if checked_only:
        # the split decides which images are checked: run up to it, then ask for those
        snakemake(work, *args, "--until", "split", env=env)
        variants = list(changes.get("variants", {})) or [""]
        val = validation_images(work)
        # the targets before --configfile, which takes every word after it
        args = [
            str(Path("results", v, "reconstructed", f"{i}.json")) for v in variants for i in val
        ] + args
    proc = snakemake(work, *args, env=env)
    return work, images, proc


def validation_images(work):
    """The images the split put on the validation side (of every split table: results/dataset/,
    or results/shared/split-*/ where variants share one)."""
    tables = list((work / "results").rglob("split.tsv"))
    assert tables, f"no split table under {work / 'results'}"
    return sorted(
        {i for t in tables for i in pd.read_csv(t, sep="\t").query("split == 'val'").image}
    )


def damaged_copies(clean, folder):
    """The photos damaged as resources/make_pairs.py does, with one fixed draw: JPEG at quality
    90 and Gaussian noise of sigma 25, about 20 dB, damage a small network can learn to undo
    in a few seconds (the milder default of make_pairs.py needs minutes)."""
    spec = importlib.util.spec_from_file_location("mp", REPO / "resources" / "make_pairs.py")
    make_pairs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pairs)
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(clean.iterdir()):
        photo = np.asarray(Image.open(path).convert("RGB"))
        damaged, _ = make_pairs.damage(photo, path.name, 0, (90, 90), 25)
        Image.fromarray(damaged).save(folder / path.name)
    return folder


def mean_colour(image, size):
    """The trivial answer for an image: each size x size block painted its mean colour, a block
    cut by the image's edge the mean of its own pixels (block_reduce pads it with NaN, which
    nanmean leaves out; its default zero padding would darken the edge blocks and lower the
    floor)."""
    image = np.asarray(image, dtype=np.float64)
    means = block_reduce(image, (size, size, 1), np.nanmean, cval=np.nan)
    flat = np.repeat(np.repeat(means, size, axis=0), size, axis=1)
    return flat[: image.shape[0], : image.shape[1]]


def mean_colour_psnr(source, size):
    """PSNR of the trivial answer for an image file."""
    image = np.asarray(Image.open(source).convert("RGB"), dtype=np.float64)
    return peak_signal_noise_ratio(image, np.rint(mean_colour(image, size)), data_range=255)


def test_the_trivial_answer_is_each_blocks_own_mean_up_to_the_edges():
    # 20 x 13 pixels: blocks of 16 leave a strip of 4 and one of 13 at the edges
    rng = np.random.default_rng(0)
    image = np.repeat(rng.integers(0, 256, (1, 1, 3)), 20, axis=0).repeat(13, axis=1)
    image[16:, :, 0] = 10  # the bottom strip has its own red
    flat = mean_colour(image, 16)
    assert flat.shape == image.shape
    # sums of at most 256 integers: exact in float64 but for the division, within 1e-9
    np.testing.assert_allclose(flat, image, atol=1e-9)


def learning_failures(work, images, variant=None):
    """What says the model (of a variant, when named) did not learn: its own flags, and the
    validation images' PSNR not clearly above the trivial answer (each patch's mean colour; in
    denoise mode, the noisy input)."""
    r = work / "results" / (variant or "")
    summary = json.loads((r / "model" / "summary.json").read_text())
    # each validation image's own figures, as the reconstruction wrote them and the report reads them
    rows = [
        json.loads((r / "reconstructed" / f"{i}.json").read_text()) for i in validation_images(work)
    ]
    val = pd.DataFrame(rows)
    assert len(val) >= 1
    failures = list(summary["flags"])
    kind = summary["task"]["kind"]
    margin = RESTORE_MARGIN_DB if kind == "restore" else MARGIN_DB
    if kind == "denoise":
        floor, what = val.psnr_input.mean(), "the noisy input"
    elif kind in ("restore", "paired"):
        floor, what = val.psnr_input.mean(), "the damaged input"
    else:
        size = TINY["patches"]["size"]
        floor = np.mean([mean_colour_psnr(images / name, size) for name in val.image])
        what = "each patch's mean colour"
    if val.psnr.mean() < floor + margin:
        failures.append(f"validation PSNR {val.psnr.mean():.2f} dB vs {floor:.2f} dB for {what}")
    return failures


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return workflow_run(tmp_path_factory, "work", env=EIGEN)


def test_the_model_learned_more_than_the_trivial_answer(run):
    work, images, _ = run
    assert learning_failures(work, images) == []


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
    # the split writes its table only: the patches stay in their per-image files
    assert sorted(p.name for p in (r / "dataset").iterdir()) == ["split.tsv"]
    assert (r / "model" / "model.keras").stat().st_size > 0
    history = pd.read_csv(r / "model" / "history.tsv", sep="\t")
    assert list(history.columns[:3]) == ["epoch", "loss", "val_loss"] and len(history) == EPOCHS
    summary = json.loads((r / "model" / "summary.json").read_text())
    assert {"params", "backend", "device", "patches_per_s", "epochs", "wall_s"} <= set(summary)
    assert summary["precision"] in ("float32", "mixed_bfloat16")
    assert summary["precision_reason"].startswith("auto: ") and summary["cpu"]["model"]
    metrics = pd.read_csv(r / "report" / "metrics.tsv", sep="\t")
    assert {"image", "split", "psnr", "ssim", "mse"} <= set(metrics.columns)
    assert sorted(metrics.image) == names and metrics.psnr.between(5, 80).all()
    assert pd.read_csv(r / "report" / "loss.tsv", sep="\t").shape[0] == EPOCHS
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


def cost_rows(page):
    """{stage: (jobs, wall s, peak RSS MB, CPU s)} of the report's time-and-memory table."""
    section = page.split('<h2 id="cost">', 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", section, re.S)[1:]:
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        rows[cells[0]] = tuple(float(c) if c != "-" else None for c in cells[1:])
    return rows


def test_every_job_is_benchmarked_and_the_report_shows_each_stages_cost(run):
    work, images, _ = run
    bench = work / "logs" / "benchmarks"
    names = sorted(p.name for p in images.iterdir())
    files = {
        "patches": [bench / "patches" / f"{n}.tsv" for n in names],
        "split": [bench / "dataset" / "split.tsv"],
        "train": [bench / "train.tsv"],
        "reconstruct": [bench / "reconstruct" / f"{n}.tsv" for n in names],
        "seams": list((bench / "reconstruct").glob("*.naive.tsv")),
        "baselines": [bench / "baselines" / "baselines.tsv"],
    }
    assert (bench / "report.tsv").is_file()
    rows = cost_rows((work / "results" / "report" / "index.html").read_text())
    assert list(rows) == [*files, "all"]
    for stage, paths in files.items():
        tables = [pd.read_csv(p, sep="\t") for p in paths]
        jobs, wall, rss, cpu = rows[stage]
        assert jobs == len(paths) >= 1
        # the page rounds wall and CPU seconds to 0.1 and memory to 1 MB
        assert abs(wall - sum(t.s.sum() for t in tables)) <= 0.05 * len(paths) + 1e-9
        assert abs(cpu - sum(t.cpu_time.sum() for t in tables)) <= 0.05 * len(paths) + 1e-9
        assert abs(rss - max(t.max_rss.max() for t in tables)) <= 0.5
        # Snakemake samples memory while a job runs: a job of a fraction of a second (the
        # split, on a fast CPU) may end before its first sample, and shows 0 MB
        assert wall > 0 and rss >= 0
    assert rows["train"][2] > 0  # training runs seconds: sampled
    assert rows["all"][0] == sum(len(p) for p in files.values())
    assert rows["train"][1] > rows["split"][1]  # training is the run's longest job


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
