"""Holes given as mask images (white where missing), beside the holes' gray: `tessera apply
--masks`, the Python API's restore(mask=...) and tessera.tasks.restore.mark_holes."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tessera import TesseraError, api, apply
from tessera.tasks.restore import HOLE_FILL, mark_holes
from tests.conftest import REPO, sample

PHOTO = sample("chelsea.png", (100, 60, 196, 156))  # 96 x 96
HOLE = np.zeros(PHOTO.shape[:2], bool)
HOLE[30:40, 20:34] = True
STRAY = np.zeros(PHOTO.shape[:2], bool)  # known pixels that happen to be the holes' gray
STRAY[70:74, 60:80] = True


def _folders(tmp_path, mask, mask_name="cat.png"):
    """A folder holding cat.png (the photo) and a folder of masks holding mask (a PIL image)."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    Image.fromarray(_photo()).save(photos / "cat.png")
    mask.save(masks / mask_name)
    return photos, masks


def _photo():
    photo = PHOTO.copy()
    photo[HOLE] = (255, 0, 0)  # what the mask hides: the network must not see it
    photo[STRAY] = HOLE_FILL
    return photo


def test_mark_holes_paints_the_mask_and_nudges_known_gray():
    marked = mark_holes(_photo(), HOLE)
    assert (marked[HOLE] == HOLE_FILL).all()
    assert not np.all(marked[STRAY] == HOLE_FILL, axis=-1).any()  # no longer read as holes
    assert np.abs(marked[~HOLE].astype(int) - _photo()[~HOLE]).max() == 1
    assert (marked[~HOLE & ~STRAY] == _photo()[~HOLE & ~STRAY]).all()


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_a_mask_wins_over_the_gray(holes_model, tmp_path):
    model = api.load(holes_model)
    photo = _photo()
    masked = model.restore(photo, tile=64, mask=HOLE)
    # outside the mask the photo comes back (the stray gray within one level, as nudged)
    assert np.abs(masked[~HOLE].astype(int) - photo[~HOLE]).max() <= 1
    # inside it the red the mask hides was never seen: the fill comes from around the hole
    assert masked[HOLE][:, 0].astype(int).mean() < 200
    # the counterpart: without the mask the red stays and the stray gray is taken for a hole
    plain = model.restore(photo, tile=64)
    assert (plain[HOLE] == photo[HOLE]).all()
    assert (plain[STRAY] != HOLE_FILL).any()


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_apply_reads_each_images_mask_by_its_path(holes_model, tmp_path):
    white = Image.fromarray(np.where(HOLE, 255, 0).astype(np.uint8))
    photos, masks = _folders(tmp_path, white, "cat.jpg")
    Image.fromarray(_photo()).save(photos / "other.png")  # no mask: the gray is its holes
    run = [sys.executable, "-m", "tessera", "apply", str(holes_model / "model.keras")]
    done = subprocess.run(
        [*run, str(photos), str(tmp_path / "out"), "--masks", str(masks), "--tile", "64"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    cat = np.asarray(Image.open(tmp_path / "out" / "cat.png.png"))
    other = np.asarray(Image.open(tmp_path / "out" / "other.png.png"))
    assert cat[HOLE][:, 0].astype(int).mean() < 200 and (other[HOLE] == _photo()[HOLE]).all()
    assert "mask" in (tmp_path / "out" / "metrics.tsv").read_text().splitlines()[0].split("\t")


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_masks_are_refused_for_a_model_not_told_of_holes(compact_model, tmp_path):
    (tmp_path / "masks").mkdir()
    summary = apply.read_summary(compact_model / "model.keras")[1]
    with pytest.raises(TesseraError, match="not trained to fill holes"):
        apply.check_masks(summary, tmp_path / "masks")
    with pytest.raises(TesseraError, match="masks folder .*nowhere.* does not exist"):
        apply.check_masks(summary, tmp_path / "nowhere")


@pytest.mark.slow  # trains a model once a session (tests/unit/conftest.py)
def test_a_mask_of_another_size_names_the_mask(holes_model, tmp_path):
    photos, masks = _folders(tmp_path, Image.new("L", (50, 40), 255))
    with pytest.raises(TesseraError, match=r"mask '.*masks/cat.png' of image .* is 50x40"):
        apply.apply_folder(holes_model / "model.keras", photos, tmp_path / "out", masks=masks)
