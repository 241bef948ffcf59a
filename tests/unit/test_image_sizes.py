"""Awkward image sizes: strips, sides that are no multiple of the tile, images under one patch.

Tiling is checked with a model that returns its input: whatever the size, every pixel must come
back where it was, so nothing is cropped, shifted or left black at the edges.
"""

import json

import numpy as np
import pytest
from PIL import Image

from tessera import patches, reconstruct, split
from tests.conftest import sample


class Identity:
    def predict_on_batch(self, batch):
        return batch


def photo(h, w):
    """A real photograph resized to h x w, so that edges hold texture rather than a flat colour."""
    return np.asarray(Image.fromarray(sample("chelsea.png")).resize((w, h)))


@pytest.mark.parametrize(
    "h, w", [(200, 3000), (3000, 40), (37, 53), (129, 131), (12, 10), (8, 8), (8, 300)]
)
@pytest.mark.parametrize("mode", ["crop", "blend", "naive"])
def test_every_pixel_comes_back_whatever_the_size(h, w, mode):
    image = photo(h, w)
    plan = reconstruct.make_plan(h, w, tile=32, margin=8, multiple=4, mode=mode)
    out = reconstruct.to_uint8(reconstruct.reconstruct(Identity(), image, plan, batch_size=4))
    assert out.shape == image.shape
    assert np.abs(out.astype(int) - image).max() <= 1
    # the last rows and columns are the image's, not padding or black
    assert (out[-1] == image[-1]).all() and (out[:, -1] == image[:, -1]).all()


def test_image_smaller_than_the_tile_with_the_default_margin():
    image = photo(9, 11)
    plan = reconstruct.make_plan(9, 11, tile=128, margin=16, multiple=4)
    assert plan.count == 1
    out = reconstruct.to_uint8(reconstruct.reconstruct(Identity(), image, plan, batch_size=8))
    assert (out == image).all()


def test_image_smaller_than_one_patch_gives_no_patches_and_a_note_but_is_kept(tmp_path):
    Image.fromarray(photo(12, 20)).save(tmp_path / "small.png")
    info = patches.run(
        tmp_path / "small.png", "small.png", tmp_path / "s.npy", tmp_path / "s.json", 16, 8, None, 0
    )
    assert info["status"] == "ok" and info["patches"] == 0
    assert info["width"] == 20 and info["height"] == 12
    assert any("smaller than one 16x16 patch" in n for n in info["notes"])
    assert np.load(tmp_path / "s.npy").shape == (0, 16, 16, 3)
    others = [
        {"image": f"{i}.png", "path": f"{i}.png", "status": "ok", "patches": 10} for i in "abcd"
    ]
    table = split.assign(others + [json.loads((tmp_path / "s.json").read_text())], 0.3, 0)
    row = table[table.image == "small.png"].iloc[0]
    assert row.split in ("train", "val")  # not skipped: the reconstruct stage takes it


def test_a_wide_strip_gives_patches_along_its_whole_length(tmp_path):
    strip = photo(200, 3000)
    got = patches.extract(strip, 32, 16)
    assert len(got) == ((200 - 32) // 16 + 1) * ((3000 - 32) // 16 + 1)
    assert (got[-1] == strip[160:192, 2960:2992]).all()
