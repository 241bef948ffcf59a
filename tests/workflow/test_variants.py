"""Variants in one run: shared stages run once, each variant reruns alone, a comparison page, GPUs
handed out one per training, networks as settings (a grid over a preset's argument, a model file
of one's own, fine-tuning), and a trained model applied to a folder it never saw.

One real run of four variants (a grid of two widths of the compact preset, one with other patches
and one with a model file) on four small photographs, with two fake GPU ids, is shared by every
case; the rerun cases are dry runs against it, as in test_rerun.py.
"""

import json
import re
import shutil
from collections import Counter
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO, sample, small_photos, snakemake, tiny_config
from tests.workflow.test_rerun import jobs_in, planned, rules

GRID = {"model.width": [4, 8]}
WIDTHS = ["model_width~4", "model_width~8"]  # named by Paramspace
OTHER = {"small": {"patches": {"size": 8, "stride": 8}}}
MINE = {"mine": {"model": {"file": "mine.py", "args": {"width": 4}}}}
VARIANTS = [*WIDTHS, "mine", "small"]
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png")
# the jobs of one variant, once its split is known: training, every image, the naive tiling of the
# image the report shows, the report, the model card and the comparison of all
ONE_VARIANT = {
    "train": 1,
    "reconstruct": len(PHOTOS),
    "seams": 1,
    "report": 1,
    "card": 1,
    "compare": 1,
}


def write_config(work, **changes):
    base = yaml.safe_load((work / "base.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    (work / "run.yaml").write_text(yaml.safe_dump(base))


def run(work, *args, **kw):
    return snakemake(work, *args, "--configfile", str(work / "run.yaml"), **kw)


def plan(work, *args):
    """Jobs per rule that a dry run plans."""
    return Counter(rules(planned(run(work, "-n", *args))))


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    work = tmp_path_factory.mktemp("variants")
    images = small_photos(work / "photos")
    shutil.copy(REPO / "examples" / "tiny_unet.py", work / "mine.py")
    tiny_config(
        work / "base.yaml", images, train={"epochs": 4, "threads": 1},
        grid=GRID, variants={**OTHER, **MINE},
    )  # fmt: skip
    write_config(work)
    # Two GPUs on this machine, as CUDA_VISIBLE_DEVICES says (fake ids: the CPU still trains),
    # and room for three trainings at once but for the GPUs.
    first = run(
        work, "--cores", "3", "--resources", "gpu=2", env={"CUDA_VISIBLE_DEVICES": "7,9"},
        timeout=1500,  # a shared, loaded CPU can take minutes
    )  # fmt: skip
    return work, images, first


def test_variants_that_differ_only_in_training_share_patches_and_split(tmp_path):
    images = small_photos(tmp_path / "photos")
    grid = {"train.learning_rate": [0.002, 0.004]}
    tiny_config(tmp_path / "base.yaml", images, grid=grid, variants=OTHER)
    write_config(tmp_path)
    assert plan(tmp_path) == {
        # two patch settings (the grid's, and small's): each image cut twice, not three times
        "patches": 2 * len(PHOTOS),
        "split": 2,
        "baselines": 2,
        "train": 3,
        "report": 3,
        "card": 3,
        "compare": 1,
    }
    write_config(tmp_path, variants=None)  # the grid alone: one patch setting
    assert plan(tmp_path)["patches"] == len(PHOTOS)


def test_each_variant_has_its_own_folder_and_shared_stages_ran_once(done):
    work, _, first = done
    r = work / "results"
    assert sorted(p.name for p in r.iterdir() if not p.name.startswith(".")) == sorted(
        ["compare", "shared", *VARIANTS]
    )
    finished = Counter(rules(jobs_in(first.stdout + first.stderr)))
    # the grid and the model file share one patch setting; small has its own
    assert finished["patches"] == 2 * len(PHOTOS) and finished["split"] == 2
    assert finished["train"] == 4 and finished["reconstruct"] == 4 * len(PHOTOS)
    for v in VARIANTS:
        assert (r / v / "report" / "index.html").is_file()
    assert json.loads((r / "small" / "model" / "summary.json").read_text())["train_patches"] != (
        json.loads((r / WIDTHS[0] / "model" / "summary.json").read_text())["train_patches"]
    )


def test_a_grid_over_a_preset_argument_trains_each_width_and_the_file(done):
    r = done[0] / "results"
    for variant, width in zip(WIDTHS, (4, 8)):
        summary = json.loads((r / variant / "model" / "summary.json").read_text())
        assert summary["model"] == {"preset": "compact", "width": width, "latent": 12, "kernel": 3}
        assert summary["preset"] == "compact" and summary["network"] == f"compact (width {width})"
    summary = json.loads((r / "mine" / "model" / "summary.json").read_text())
    assert summary["model"]["file"] == "mine.py" and summary["model"]["args"] == {"width": 4}
    assert len(summary["model"]["hash"]) == 12 and "preset" not in summary
    assert summary["receptive_radius"] == 3 and summary["size_multiple"] == 2
    # TensorBoard logs beside each variant's history, outside the declared outputs
    for variant in VARIANTS:
        assert list((r / variant / "model" / "tensorboard" / "train").glob("events.out.*"))


def test_the_comparison_page_has_every_variant_and_only_the_settings_that_differ(done):
    work, _, _ = done
    page_dir = work / "results" / "compare"
    table = pd.read_csv(page_dir / "compare.tsv", sep="\t")
    assert list(table.variant) == VARIANTS
    differing = [c for c in table.columns if "." in c]
    # stride is 8 in both patch settings; the model file's arguments and hash are its own
    assert [c for c in differing if not c.startswith("model.")] == ["patches.size"]
    assert {"model.width", "model.file"} <= set(differing)
    assert table.set_index("variant").loc[WIDTHS, "model.width"].tolist() == [4, 8]
    assert table.set_index("variant").loc["mine", "model.file"] == "mine.py"
    assert table.best.sum() == 1
    assert table.loc[table.best, "val_psnr"].item() == table.val_psnr.max()
    assert (table.margin_db.notna()).all() and (table.epochs == 4).all()
    page = (page_dir / "index.html").read_text()
    for v in VARIANTS:
        assert v in page
    # each network one cell of the table; every argument under the settings below it
    assert "compact: width 4, latent 12, kernel 3" in page and "mine.py: build(width=4)" in page
    assert "model.<wbr>width" in page and "compact (width 4)" in page and "mine.py:build" in page
    report = (work / "results" / "mine" / "report" / "index.html").read_text()
    assert "Model file <b>mine.py:build</b>" in report
    assert (page_dir / "loss.png").stat().st_size > 0
    crops = sorted(p.name for p in (page_dir / "crops").iterdir() if not p.name.startswith("."))
    assert "original.png" in crops and len(crops) == 1 + len(VARIANTS)
    sizes = {Image.open(page_dir / "crops" / c).size for c in crops}
    assert len(sizes) == 1
    # each variant's report links to it
    report = (work / "results" / "small" / "report" / "index.html").read_text()
    assert 'href="../../compare/index.html"' in report


def test_each_training_saw_one_gpu_of_its_own(done):
    work, _, _ = done
    spans = []
    for v in VARIANTS:
        s = json.loads((work / "results" / v / "model" / "summary.json").read_text())
        spans.append((s["started_at"], s["ended_at"], s["cuda_visible_devices"]))
        assert s["cuda_visible_devices"] in ("7", "9")
        assert "GPU(s) " in (work / "logs" / v / "train.log").read_text()
    overlapping = [(a, b) for a, b in combinations(spans, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans  # two trainings ran at once (else this test proves nothing)
    for a, b in overlapping:
        assert a[2] != b[2], spans
    # never three at once: two GPUs
    for a, b, c in combinations(spans, 3):
        assert not (max(a[0], b[0], c[0]) < min(a[1], b[1], c[1])), spans


def test_nothing_changed_nothing_to_do(done):
    assert plan(done[0]) == Counter()


def training_jobs(out):
    """The train jobs a dry run lists, each as the text of its block (input, output, wildcards)."""
    blocks = re.split(r"^\[.*\]$", out, flags=re.M)  # each job's block starts with a timestamp
    return [b for b in blocks if b.lstrip().startswith("rule train:")]


def test_a_comment_in_the_model_file_reruns_nothing_and_a_code_edit_retrains_its_variant(done):
    work = done[0]
    original = (work / "mine.py").read_text()
    try:
        (work / "mine.py").write_text(original.replace("# any size", "# every size\n\n# more"))
        assert plan(work) == Counter()
        (work / "mine.py").write_text(original.replace("2 * width", "3 * width"))
        jobs = training_jobs(run(work, "-n").stdout)
        assert len(jobs) == 1 and "variant=mine" in jobs[0], jobs
    finally:
        (work / "mine.py").write_text(original)
    assert plan(work) == Counter()


def test_fine_tuning_from_another_variants_model_is_an_input_of_its_training(done):
    work = done[0]
    start = f"results/{WIDTHS[0]}/model/model.keras"
    tuned = {"tuned": {"model": {"width": 4, "init": start}}}
    write_config(work, variants={**OTHER, **MINE, **tuned})
    try:
        jobs = training_jobs(run(work, "-n").stdout)
        assert len(jobs) == 1 and "variant=tuned" in jobs[0] and start in jobs[0], jobs
    finally:
        write_config(work)


def test_adding_a_variant_runs_only_its_jobs_and_the_comparison(done):
    work = done[0]
    write_config(work, variants={**OTHER, **MINE, "sgd": {"train": {"optimizer": "sgd"}}})
    try:
        # its patches and split are the grid's: nothing shared runs again
        assert plan(work) == ONE_VARIANT
    finally:
        write_config(work)


def test_changing_one_variants_setting_reruns_only_that_variant(done):
    work = done[0]
    small = {"small": {"patches": {"size": 8, "stride": 8}, "train": {"epochs": 5}}}
    write_config(work, variants={**MINE, **small})
    try:
        assert plan(work) == ONE_VARIANT
    finally:
        write_config(work)


def test_removing_a_variant_reruns_nothing_but_the_comparison(done):
    work = done[0]
    write_config(work, variants=None)
    try:
        assert plan(work) == {"compare": 1}
    finally:
        write_config(work)


def test_snakemake_report_has_the_comparison(done):
    work = done[0]
    run(work, "--report", "results/report.zip")
    import zipfile

    with zipfile.ZipFile(work / "results" / "report.zip") as z:
        names = {Path(n).name for n in z.namelist()}
    assert {"compare.tsv", "loss.png", "original.png"} <= names


def new_photos(folder):
    """Photos the workflow never saw: other crops, an EXIF-rotated JPEG, and two bad files."""
    folder.mkdir()
    Image.fromarray(sample("camera.png", (0, 0, 150, 130))).save(folder / "cam era.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the upright image is 60 wide and 90 high
    Image.fromarray(sample("retina.jpg", (400, 400, 490, 460))).save(folder / "eye.jpg", exif=exif)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    (folder / "notes.txt").write_text("not an image")
    return {"cam_era~9dfdd2.png": (150, 130), "eye.jpg": (60, 90)}


def test_apply_runs_a_variants_model_over_a_new_folder(done, tmp_path):
    work = done[0]
    expected = new_photos(tmp_path / "new")
    out = snakemake(
        work, "apply", "--configfile", str(work / "run.yaml"),
        "--config", f"apply={{images: '{tmp_path / 'new'}', model: small}}",
    )  # fmt: skip
    applied = work / "results" / "small" / "applied"
    assert "rule train" not in out.stdout  # the model is there: nothing retrains
    for image, size in expected.items():
        assert Image.open(applied / f"{image}.png").size == size
    metrics = pd.read_csv(applied / "metrics.tsv", sep="\t")
    assert sorted(metrics.image) == sorted(expected) and metrics.psnr.notna().all()
    skipped = pd.read_csv(applied / "skipped.tsv", sep="\t")
    assert sorted(skipped.path) == ["broken.png", "notes.txt"]


def test_apply_takes_a_model_trained_in_another_clone(done, tmp_path):
    work = done[0]
    elsewhere = tmp_path / "other clone"
    elsewhere.mkdir()
    for f in ("model.keras", "summary.json"):
        shutil.copy(work / "results" / WIDTHS[0] / "model" / f, elsewhere / f)
    expected = new_photos(tmp_path / "new")
    out_dir = tmp_path / "out"
    snakemake(
        work, "apply", "--configfile", str(work / "run.yaml"), "--config",
        f"apply={{images: '{tmp_path / 'new'}', model: '{elsewhere / 'model.keras'}', "
        f"output: '{out_dir}'}}",
    )  # fmt: skip
    for image, size in expected.items():
        assert Image.open(out_dir / f"{image}.png").size == size


def test_apply_refuses_a_file_that_is_not_a_model_in_one_line(done, tmp_path):
    work = done[0]
    new_photos(tmp_path / "new")
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    bad = snakemake(
        work, "apply", "-n", "--configfile", str(work / "run.yaml"), "--config",
        f"apply={{images: '{tmp_path / 'new'}', model: '{fake}'}}", check=False,
    )  # fmt: skip
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "tessera: error: apply.model:" in out and str(fake) in out
    assert "Traceback" not in out


def test_a_bad_variant_setting_names_the_variant_and_the_key(done):
    work = done[0]
    write_config(work, variants={"bad": {"train": {"learning_rate": -1}}})
    try:
        bad = run(work, "-n", check=False)
    finally:
        write_config(work)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "variants.bad.train.learning_rate" in out
    assert "Traceback" not in out
