import json

import numpy as np

from tessera import patches
from tests.conftest import sample


def test_extract_matches_a_plain_loop_on_a_real_photo():
    image = sample("chelsea.png", (0, 0, 101, 77))
    size, stride = 16, 12
    got = patches.extract(image, size, stride)
    expected = [
        image[y : y + size, x : x + size]
        for y in range(0, image.shape[0] - size + 1, stride)
        for x in range(0, image.shape[1] - size + 1, stride)
    ]
    assert got.dtype == np.uint8
    assert got.shape == (len(expected), size, size, 3)
    assert np.array_equal(got, np.stack(expected))


def test_max_patches_keeps_a_seeded_subset():
    image = sample("coffee.png")
    a = patches.extract(image, 32, 16, max_patches=50, seed=3)
    b = patches.extract(image, 32, 16, max_patches=50, seed=3)
    full = patches.extract(image, 32, 16)
    assert len(a) == 50 and np.array_equal(a, b)
    assert all(any(np.array_equal(p, q) for q in full) for p in a[:5])


def test_image_smaller_than_a_patch_gives_none():
    assert patches.extract(np.zeros((10, 40, 3), np.uint8), 16, 8).shape == (0, 16, 16, 3)


def test_run_records_an_undecodable_file_instead_of_failing(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    info = patches.run(bad, "broken.jpg", tmp_path / "p.npy", tmp_path / "p.json", 16, 8, None, 0)
    assert info["status"] == "skipped" and info["path"].endswith("broken.jpg") and info["reason"]
    assert np.load(tmp_path / "p.npy").shape == (0, 16, 16, 3)
    assert json.loads((tmp_path / "p.json").read_text())["status"] == "skipped"
