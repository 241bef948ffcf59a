"""A real user's folder: good, odd and bad files together, run end to end; clear stops otherwise.

One real run on a mixed folder (module fixture); everything else is a dry run or a run that stops
before training.
"""

import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from tests.conftest import sample, snakemake, tiny_config

# Small patch budget, and a megapixel limit that the test's "huge" image exceeds.
TINY = dict(
    max_megapixels=0.05,
    patches={"max_per_image": 150},
    split={"val_fraction": 0.3},
    report={"thumbnail": 48},
)

# Were any file name run through a shell, this command would leave a file behind.
METACHARS = "a;b $(touch CANARY) `touch CANARY` {y} 'q' *.png"


def crop(name, x, y, w=72, h=64):
    return Image.fromarray(sample(name, (x, y, x + w, y + h)))


SCAN = crop("camera.png", 200, 100).convert("L")  # saved as 16 bits
PRINT = crop("astronaut.png", 250, 250)  # saved as CMYK


def make_good(folder):
    """Files that must be used; returns {path in the folder: (width, height) a viewer shows}."""
    shown = {}

    def keep(rel, im, **save):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        im.save(folder / rel, **save)
        with Image.open(folder / rel) as f:
            shown[rel] = ImageOps.exif_transpose(f).size

    keep("astronaut.png", crop("astronaut.png", 150, 40))
    keep("café photo 1.png", crop("coffee.png", 200, 100))
    keep(METACHARS, crop("rocket.jpg", 250, 150))
    keep("holiday/Rocket.JPG", crop("rocket.jpg", 100, 200), quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: stored 80 wide, shown 80 high
    keep("phone.jpg", crop("chelsea.png", 100, 50, 80, 48), exif=exif, quality=92)
    rgba = crop("coffee.png", 50, 50).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    keep("screenshot.png", rgba)
    keep("scan16.png", Image.fromarray(np.asarray(SCAN, dtype=np.uint16) * 257))
    keep("print.jpg", PRINT.convert("CMYK"), quality=92)
    frames = [crop("chelsea.png", 150 + 10 * i, 80) for i in range(3)]
    keep("anim.gif", frames[0], save_all=True, append_images=frames[1:])
    keep("strip.webp", crop("coffee.png", 0, 200, 301, 27), lossless=True)
    keep("tiny.png", crop("astronaut.png", 200, 80, 13, 11))  # under one 16x16 patch
    return shown


# the bad files, each with words its skip reason must contain
BAD = {
    "cut.jpg": "truncated",
    "empty.png": "empty file",
    "notes.jpg": "not an image",
    "notes.txt": "not an image file extension",
    ".DS_Store": "hidden file",
    "._astronaut.png": "hidden file",
    "folder.png": "a folder",
    "pixel.png": "too small",
    "huge.png": "max_megapixels",
    "IMG_0001.heic": "cannot be read",
    "{z} list.txt": "not an image file extension",
}


def make_bad(folder):
    buf = io.BytesIO()
    crop("chelsea.png", 0, 0, 200, 160).save(buf, "JPEG", quality=90)
    (folder / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a picture\n")
    (folder / "notes.txt").write_text("holiday notes\n")
    (folder / "{z} list.txt").write_text("eggs\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "._astronaut.png").write_bytes(b"\0\5\26\7")
    (folder / "folder.png").mkdir()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "pixel.png")
    crop("astronaut.png", 0, 0, 300, 200).save(folder / "huge.png")  # 0.06 MP, over 0.05
    (folder / "IMG_0001.heic").write_bytes(b"\0\0\0\x18ftypheic")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    folder = work / "My Photos"
    folder.mkdir()
    shown = make_good(folder)
    make_bad(folder)
    tiny_config(work / "tiny.yaml", folder, **TINY)
    proc = snakemake(work, "--configfile", str(work / "tiny.yaml"))
    return work, folder, shown, proc


def ids(work):
    """{path in the folder: image id}, as the patch stage recorded them."""
    infos = [json.loads(p.read_text()) for p in (work / "results/patches").rglob("*.json")]
    return {i["path"]: i["image"] for i in infos}


class _Tables(HTMLParser):
    """The text of every table cell, per table, per row."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def report_tables(work):
    parser = _Tables()
    parser.feed((work / "results/report/index.html").read_text())
    return parser.tables


def test_every_good_file_is_rebuilt_at_the_size_a_viewer_shows(mixed):
    work, folder, shown, _ = mixed
    by_path = ids(work)
    for rel, size in shown.items():
        rebuilt = work / "results/reconstructed" / f"{by_path[rel]}.png"
        assert rebuilt.is_file(), rel
        out = np.asarray(Image.open(rebuilt).convert("RGB"))
        assert (out.shape[1], out.shape[0]) == size, rel
        # the edges are rebuilt, not left black
        assert out[-1].mean() > 8 and out[:, -1].mean() > 8, rel
    assert Image.open(work / "results/reconstructed/phone.jpg.png").size == (48, 80)


def test_every_output_is_recognisable_and_none_is_shared(mixed):
    work, folder, shown, _ = mixed
    by_path = ids(work)
    assert len(set(by_path.values())) == len(by_path)
    assert by_path["café photo 1.png"].startswith("café_photo_1~")
    assert by_path["holiday/Rocket.JPG"] == "holiday/Rocket.JPG"
    assert re.fullmatch(r"a_b_touch_CANARY_touch_CANARY_y_q_~[0-9a-f]{6}\.png", by_path[METACHARS])
    assert not list(work.rglob("CANARY")) and not (Path.cwd() / "CANARY").exists()


def test_conversions_are_right_in_the_patches(mixed):
    work, folder, shown, _ = mixed

    def patches_mean(rel):
        info = json.loads((work / "results/patches" / f"{rel}.json").read_text())
        assert info["status"] == "ok" and info["patches"] > 0, rel
        return np.load(work / "results/patches" / f"{rel}.npy").mean()

    # the patches are a sample of the image, so the means agree roughly; the failures they catch
    # (16 bits clipped to white, CMYK inverted, alpha dropped) are far off
    assert abs(patches_mean("scan16.png") - np.asarray(SCAN).mean()) < 20
    assert abs(patches_mean("print.jpg") - np.asarray(PRINT).mean()) < 20
    # a gradient from transparent (left, shows white) to opaque: brighter than the photo alone
    photo = np.asarray(crop("coffee.png", 50, 50)).mean()
    assert patches_mean("screenshot.png") > photo + 30


def test_bad_files_are_skipped_named_and_listed_in_the_report(mixed):
    work, folder, shown, proc = mixed
    skipped = {}
    for table in report_tables(work):
        if table and table[0] == ["file", "reason"]:
            skipped = {row[0]: row[1] for row in table[1:]}
    assert set(skipped) == set(BAD)
    for name, words in BAD.items():
        assert words in skipped[name], (name, skipped[name])
    terminal = proc.stderr
    for name in ("cut.jpg", "empty.png", "notes.jpg", "pixel.png", "huge.png"):
        line = next(ln for ln in terminal.splitlines() if "warning: skipped" in ln and name in ln)
        assert BAD[name] in line
    split = pd.read_csv(work / "results/dataset/split.tsv", sep="\t", keep_default_na=False)
    assert set(split.path[split.split == "skipped"]) == {
        "cut.jpg",
        "empty.png",
        "notes.jpg",
        "pixel.png",
        "huge.png",
    }


def test_odd_files_warn_and_still_count(mixed):
    work, folder, shown, proc = mixed
    assert "anim.gif: has 3 frames" in proc.stderr
    assert "tiny.png: smaller than one 16x16 patch" in proc.stderr
    tiny = json.loads((work / "results/patches/tiny.png.json").read_text())
    assert tiny["status"] == "ok" and tiny["patches"] == 0
    table = next(
        t for t in report_tables(work) if t[0][:4] == ["image", "split", "width", "height"]
    )
    rows = {r[0]: r for r in table[1:] if not r[0].startswith("mean (")}
    assert set(rows) == set(shown)  # the metrics table: every good file, by its own name
    assert rows["tiny.png"][2:4] == ["13", "11"]
    assert rows["phone.jpg"][2:4] == ["48", "80"]


def test_adding_one_image_reruns_only_what_it_touches(mixed):
    work, folder, shown, _ = mixed
    config = ("--configfile", str(work / "tiny.yaml"))
    crop("chelsea.png", 300, 200).save(folder / "new one.png")
    try:
        dry = snakemake(work, *config, "-n", "--quiet", "rules").stdout
    finally:
        (folder / "new one.png").unlink()
    counts = _job_counts(dry)
    # Its own patch job, then the split, training, report and the other stages that aggregate
    # every image, once each. Which images are rebuilt is known only once the split checkpoint has
    # run: every one, as the model has changed.
    assert counts["patches"] == 1 and {"split", "train", "report"} <= set(counts)
    assert set(counts.values()) == {1}


def test_removing_one_image_runs_no_patch_job(mixed, tmp_path):
    work, folder, shown, _ = mixed
    config = ("--configfile", str(work / "tiny.yaml"))
    shutil.move(folder / "astronaut.png", tmp_path / "astronaut.png")
    try:
        dry = snakemake(work, *config, "-n", "--quiet", "rules").stdout
    finally:
        shutil.move(tmp_path / "astronaut.png", folder / "astronaut.png")
    counts = _job_counts(dry)
    assert "patches" not in counts and {"split", "train", "report"} <= set(counts)
    assert set(counts.values()) == {1}
    assert "Nothing to be done" in snakemake(work, *config, "-n").stdout


def _job_counts(text):
    """{rule: jobs} from the job-stats table of a dry run."""
    counts, table = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
        elif table and parts and parts[0] == "total":
            break
        elif table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


# -- clear stops: one line naming the problem and what to do, exit status 1, no traceback --------


def one_error_line(proc, prefix="tessera: error: "):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    lines = {ln for ln in out.splitlines() if ln.startswith(prefix)}  # the log may echo it
    assert len(lines) == 1, out
    return lines.pop()[len(prefix) :]


def dry_run(work, folder, *config):
    tiny_config(work / "tiny.yaml", folder, **TINY)
    return snakemake(work, "-n", "--configfile", str(work / "tiny.yaml"), *config, check=False)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("patches={stride: -1}", "patches.stride: -1 is not allowed; use an integer >= 1"),
        ("model={preset: huge}", "model.preset: unknown preset 'huge'; choose one of: compact"),
    ],
)
def test_a_bad_setting_stops_before_any_job_with_one_line(tmp_path, value, expected):
    folder = tmp_path / "images"
    folder.mkdir()
    crop("coffee.png", 0, 0).save(folder / "coffee.png")
    proc = dry_run(tmp_path, folder, "--config", value)
    assert one_error_line(proc).startswith(expected)


def test_a_folder_without_image_files_stops_with_one_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no pictures here")
    (tmp_path / "docs" / ".hidden.png").write_bytes(b"")
    proc = dry_run(tmp_path, tmp_path / "docs")
    assert "no image files in" in one_error_line(proc)


def test_a_folder_with_no_usable_image_stops_with_one_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    make_bad(folder)
    Image.new("RGB", (10, 10)).save(folder / "small.png")  # smaller than one 16x16 patch
    tiny_config(tmp_path / "tiny.yaml", folder, **TINY)
    proc = snakemake(tmp_path, "--configfile", str(tmp_path / "tiny.yaml"), check=False)
    line = one_error_line(proc, prefix="tessera split: error: ")
    assert line.startswith("no usable image") and "add at least two readable images" in line
