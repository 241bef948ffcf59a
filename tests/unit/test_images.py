import numpy as np
import pytest
from PIL import Image

from tessera import TesseraError, images


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
