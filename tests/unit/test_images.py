import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tessera import TesseraError, images

ROOT = Path(__file__).resolve().parents[2]
LIST = (
    "import json, sys; from tessera import images; "
    "print(json.dumps({f.path: f.reason for f in images.discover(sys.argv[1])}))"
)


def test_discover_lists_images_and_says_why_others_are_skipped(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "B.JPG")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "c.png")
    found = {f.path: f for f in images.discover(tmp_path)}
    assert {p for p, f in found.items() if f.image_id} == {"a.png", "B.JPG", "sub/c.png"}
    assert found["notes.txt"].reason == "not an image file extension"
    assert found[".DS_Store"].reason == "hidden file"
    assert "folder" in found["folder.png"].reason
    flat = {f.path for f in images.discover(tmp_path, recursive=False) if f.image_id}
    assert flat == {"a.png", "B.JPG"}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TesseraError, match="does not exist.*images"):
        images.discover(tmp_path / "nope")


@pytest.mark.parametrize(
    "name",
    ["café photo 1.png", "a;b $(x) {y} 'q'.png", "../x.png", "sub/.hidden dir.png", "*.png"],
)
def test_image_ids_are_safe_and_recognisable(name):
    i = images.image_id(name)
    assert not set(i) & set(" ;$(){}'*\\\"`|&<>?")
    assert ".." not in i.split("/")
    assert i.endswith(".png")
    # the letters of the name survive, so a user can tell which file it was
    assert "photo" in images.image_id("café photo 1.png") and "café" in images.image_id(
        "café photo 1.png"
    )


def test_ids_of_different_names_differ():
    names = ["a b.png", "a_b.png", "a;b.png", "a.png", "a.PNG", "a.jpg"]
    assert len({images.image_id(n) for n in names}) == len(names)


def test_load_image_returns_rgb_uint8(tmp_path):
    Image.new("L", (12, 9), 200).save(tmp_path / "g.png")
    a, _ = images.load_image(tmp_path / "g.png")
    assert a.shape == (9, 12, 3) and a.dtype == np.uint8 and (a == 200).all()


def test_undecodable_file_is_a_tessera_error(tmp_path):
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(TesseraError, match="bad.png"):
        images.load_image(tmp_path / "bad.png")


def test_discover_names_every_kind_of_skipped_entry(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "._good.jpg").write_bytes(b"\0\5\26\7")  # macOS resource fork
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\0")
    (tmp_path / "README").write_text("no extension")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".thumbnails" / "t.png")
    found = {f.path: f for f in images.discover(tmp_path)}
    assert {p for p, f in found.items() if f.image_id} == {"good.png"}
    assert found["._good.jpg"].reason == "hidden file"
    assert (
        ".heic" in found["IMG_0001.HEIC"].reason and "PNG or JPEG" in found["IMG_0001.HEIC"].reason
    )
    assert found["README"].reason == "not an image file extension"
    assert "not a regular file" in found["gone.png"].reason
    assert "not a regular file" in found["pipe.jpg"].reason
    assert not any(p.startswith(".thumbnails") for p in found)  # hidden folders are not read


def test_awkward_names_are_found_and_keep_distinct_recognisable_ids(tmp_path):
    names = [
        "café photo 1.png",
        "a;b $(x) {y} 'q'.png",
        "*.png",
        "semi;colon.png",
        "semi_colon.png",
        "日本の写真.JPG",
        "back`tick`.png",
    ]
    (tmp_path / "sub dir").mkdir()
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG")
    Image.new("RGB", (8, 8)).save(tmp_path / "sub dir" / "x.png")
    found = {f.path: f.image_id for f in images.discover(tmp_path) if f.image_id}
    assert set(found) == set(names) | {"sub dir/x.png"}
    assert len(set(found.values())) == len(found)
    assert found["semi_colon.png"] == "semi_colon.png"  # a safe name is kept as it is
    assert found["日本の写真.JPG"] == "日本の写真.JPG"
    assert re.fullmatch(r"sub_dir/x~[0-9a-f]{6}\.png", found["sub dir/x.png"])
    assert found["a;b $(x) {y} 'q'.png"].startswith("a_b")


def test_nfc_and_nfd_spellings_of_one_name_get_two_ids(tmp_path):
    nfc, nfd = "caf\u00e9.png", "cafe\u0301.png"
    for name in (nfc, nfd):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    ids = [f.image_id for f in images.discover(tmp_path)]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("caf") for i in ids)


def test_names_that_differ_only_in_case_are_a_clear_error(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "A.png")
    with pytest.raises(TesseraError, match="'A.png' and 'a.png' would share outputs: rename"):
        images.discover(tmp_path)


def test_an_unreadable_subfolder_is_listed(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0)
    # root reads any folder: the listing runs without the capabilities that let it
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        listing = subprocess.run(
            [*drop, sys.executable, "-c", LIST, str(tmp_path)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert listing.returncode == 0, listing.stderr
    found = json.loads(listing.stdout)
    assert found["a.png"] is None and "cannot be read" in found["locked"]


def test_dihedral_turns_are_undone_exactly():
    image = np.random.default_rng(0).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    for k in range(8):
        turned = images.dihedral(image, k)
        assert turned.shape[:2] in (image.shape[:2], image.shape[1::-1])
        assert np.array_equal(images.undo_dihedral(turned, k), image)
    assert len({images.dihedral(image, k).tobytes() for k in range(8)}) == 8
