"""Every kind of file a real images folder holds: decoded as a viewer shows it, or skipped with why.

Each fixture is written here with Pillow; the expected pixels come from the drawing, not from the
decoder under test.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tessera import images
from tessera.images import UnusableImage, load_image
from tests.conftest import sample

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def photo(w=48, h=32):
    """A crop of a real photograph, RGB uint8."""
    return sample("astronaut.png", (100, 60, 100 + w, 60 + h))


def close(a, b, tol):
    return np.abs(a.astype(int) - np.asarray(b, dtype=int)).max() <= tol


# -- must be processed, correctly converted ------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_the_upright_image(tmp_path, orientation):
    # Stored 40 wide, 20 high, blue with a red top-left corner; the tag says how to turn it.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95, subsampling=0)
    a, notes = load_image(tmp_path / "phone.jpg")
    upright = stored.transpose(
        {
            3: Image.Transpose.ROTATE_180,
            6: Image.Transpose.ROTATE_270,
            8: Image.Transpose.ROTATE_90,
        }[orientation]
    )
    assert (a.shape[1], a.shape[0]) == upright.size  # width and height as a viewer shows them
    assert np.abs(a.astype(int) - np.asarray(upright)).mean() < 4 and notes == []
    corner = {3: (-5, -5), 6: (5, -5), 8: (-5, 5)}[orientation]  # where the red corner went
    assert close(a[corner], RED, 40)


def test_grayscale_l_is_copied_to_three_channels(tmp_path):
    gray = photo().mean(axis=2).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    a, _ = load_image(tmp_path / "g.png")
    assert a.shape == gray.shape + (3,) and (a == gray[:, :, None]).all()


def test_transparency_is_composited_on_white(tmp_path):
    # Fully transparent pixels keep an arbitrary colour (red here) that must not show.
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = RED
    rgba[:8, :, :3] = 0
    rgba[:8, :, 3] = 128  # black at half opacity
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    a, _ = load_image(tmp_path / "t.png")
    assert (a[8:] == WHITE).all()
    assert close(a[:8], (127, 127, 127), 1)


def test_gray_with_alpha_la(tmp_path):
    la = Image.new("LA", (12, 12), (0, 0))
    la.paste((50, 255), (0, 0, 6, 12))
    la.save(tmp_path / "la.png")
    a, _ = load_image(tmp_path / "la.png")
    assert (a[:, :6] == 50).all() and (a[:, 6:] == 255).all()


def test_palette_png_and_gif_with_a_transparent_index(tmp_path):
    rgb = Image.fromarray(photo())
    for name in ("p.png", "p.gif"):
        p = rgb.quantize(16)
        p.info["transparency"] = 0
        p.save(tmp_path / name, transparency=0)
        expected = np.asarray(p.convert("RGB")).copy()
        expected[np.asarray(p) == 0] = WHITE
        a, notes = load_image(tmp_path / name)
        assert a.shape == (32, 48, 3) and (a == expected).all(), name
        assert notes == []


def test_palette_without_transparency(tmp_path):
    p = Image.fromarray(photo()).quantize(64)
    p.save(tmp_path / "p.bmp")
    a, _ = load_image(tmp_path / "p.bmp")
    assert (a == np.asarray(p.convert("RGB"))).all()


def test_cmyk_jpeg_with_the_adobe_marker_is_not_inverted(tmp_path):
    # Pillow (like Photoshop) writes CMYK JPEGs with the Adobe marker and inverted values.
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert b"Adobe" in (tmp_path / "c.jpg").read_bytes()
    a, _ = load_image(tmp_path / "c.jpg")
    assert close(a, RED, 8)


def _without_adobe_marker(jpeg):
    """The JPEG's bytes with its APP14 'Adobe' segment cut out."""
    out, i = bytearray(jpeg[:2]), 2
    while jpeg[i] == 0xFF and jpeg[i + 1] != 0xDA:  # up to the start of scan
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if jpeg[i + 1] != 0xEE:
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    return bytes(out + jpeg[i:])


def test_cmyk_jpeg_without_the_adobe_marker_is_read_plain(tmp_path):
    # Stored values (0, 255, 255, 0) with no marker: plain CMYK, red, as browsers show it. Pillow
    # inverts on saving, so it is handed the inverted values to store the plain ones.
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (255, 0, 0, 255)).save(buf, "JPEG", quality=95)
    data = _without_adobe_marker(buf.getvalue())
    assert b"Adobe" not in data
    (tmp_path / "plain.jpg").write_bytes(data)
    a, _ = load_image(tmp_path / "plain.jpg")
    assert close(a, RED, 8)


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, fmt):
    ramp = np.linspace(0, 65535, 40 * 24).reshape(24, 40).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / f"deep.{fmt}")
    assert Image.open(tmp_path / f"deep.{fmt}").mode.startswith("I;16")
    a, _ = load_image(tmp_path / f"deep.{fmt}")
    assert a.dtype == np.uint8
    # Pillow's plain convert("L") would clip nearly everything to 255 (a mean near 255).
    assert abs(a.mean() - ramp.mean() / 257) < 1
    assert a.min() == 0 and a.max() == 255
    assert close(a[:, :, 0], ramp / 257, 1)


@pytest.mark.parametrize(
    "name, options, tol",
    [
        ("photo.tif", {}, 0),
        ("photo.tiff", {"compression": "tiff_lzw"}, 0),
        ("photo.webp", {"lossless": True}, 0),
        ("photo.webp", {"quality": 90}, 60),
        ("photo.bmp", {}, 0),
        ("photo.ppm", {}, 0),
        ("photo.jpeg", {"quality": 95}, 60),
        ("photo.avif", {"quality": 90}, 80),
    ],
)
def test_common_formats_decode_to_the_photo(tmp_path, name, options, tol):
    rgb = photo()
    Image.fromarray(rgb).save(tmp_path / name, **options)
    a, notes = load_image(tmp_path / name)
    assert a.shape == rgb.shape and notes == []
    assert close(a, rgb, tol) and np.abs(a.astype(int) - rgb).mean() < 6


def test_upper_and_mixed_case_extensions_and_a_mislabelled_file(tmp_path):
    rgb = photo()
    Image.fromarray(rgb).save(tmp_path / "A.PNG")
    Image.fromarray(rgb).save(tmp_path / "b.Png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", format="PNG")  # a PNG named .jpg
    for name in ("A.PNG", "b.Png", "c.jpg"):
        assert (load_image(tmp_path / name)[0] == rgb).all()
    assert {f.path for f in images.discover(tmp_path) if f.image_id} == {"A.PNG", "b.Png", "c.jpg"}


@pytest.mark.parametrize("name", ["anim.gif", "pages.tif", "anim.webp", "anim.png"])
def test_multi_frame_files_give_the_first_frame_and_a_note(tmp_path, name):
    frames = [Image.new("RGB", (20, 16), c) for c in (RED, BLUE, WHITE)]
    lossless = {"lossless": True} if name.endswith(".webp") else {}
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], **lossless)
    a, notes = load_image(tmp_path / name)
    assert a.shape == (16, 20, 3) and close(a, RED, 2)
    assert len(notes) == 1 and "3 frames" in notes[0] and "first" in notes[0]


# -- must be skipped with the reason ---------------------------------------------------------------


def _reason(path, **kw):
    with pytest.raises(UnusableImage) as caught:
        load_image(path, **kw)
    e = caught.value
    assert str(path) in str(e) and e.reason in str(e) and "\n" not in str(e)
    return e.reason


def test_truncated_jpeg_opens_but_cannot_be_decoded(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(photo(96, 64)).save(buf, "JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert Image.open(tmp_path / "cut.jpg").size == (96, 64)  # the header is whole
    assert "truncated" in _reason(tmp_path / "cut.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason(tmp_path / "empty.png") == "empty file (0 bytes)"


def test_text_with_an_image_extension(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list: eggs, milk\n")
    assert "not an image" in _reason(tmp_path / "notes.jpg")


@pytest.mark.parametrize("size", [(1, 1), (7, 300), (300, 7)])
def test_images_below_the_minimum_side_are_skipped(tmp_path, size):
    Image.new("RGB", size, RED).save(tmp_path / "tiny.png")
    reason = _reason(tmp_path / "tiny.png")
    assert f"{size[0]}x{size[1]}" in reason and str(images.MIN_SIDE) in reason


def test_minimum_side_is_usable(tmp_path):
    Image.new("RGB", (images.MIN_SIDE, images.MIN_SIDE), RED).save(tmp_path / "small.png")
    assert load_image(tmp_path / "small.png")[0].shape == (images.MIN_SIDE, images.MIN_SIDE, 3)


def _png_header_only(width, height):
    """A PNG whose header declares width x height: all a decompression bomb check looks at."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_skipped_with_the_limit_named(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(Image.DecompressionBombError):  # what Pillow alone says of it
        Image.open(tmp_path / "bomb.png")
    reason = _reason(tmp_path / "bomb.png", max_megapixels=images.DEFAULT_MAX_MEGAPIXELS)
    assert "10,000 megapixels" in reason and "max_megapixels" in reason
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is left as it was


def test_a_raised_limit_lets_a_large_image_through(tmp_path):
    Image.fromarray(photo(300, 200)).save(tmp_path / "big.png")
    assert "0.06 megapixels" in _reason(tmp_path / "big.png", max_megapixels=0.05)
    assert load_image(tmp_path / "big.png", max_megapixels=0.1)[0].shape == (200, 300, 3)
    assert load_image(tmp_path / "big.png", max_megapixels=None)[0].shape == (200, 300, 3)


def test_a_file_pillow_would_hand_to_ghostscript_is_refused(tmp_path):
    (tmp_path / "drawing.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    assert "not an image" in _reason(tmp_path / "drawing.png")


def test_one_bit_image(tmp_path):
    im = Image.new("1", (16, 12), 0)
    im.paste(1, (0, 0, 8, 12))
    im.save(tmp_path / "bw.png")
    a, _ = load_image(tmp_path / "bw.png")
    assert (a[:, :8] == 255).all() and (a[:, 8:] == 0).all()


def test_rgb_png_with_a_transparent_colour(tmp_path):
    im = Image.new("RGB", (16, 12), BLUE)
    im.paste(RED, (0, 0, 8, 12))
    im.save(tmp_path / "key.png", transparency=RED)
    a, _ = load_image(tmp_path / "key.png")
    assert (a[:, :8] == WHITE).all() and (a[:, 8:] == BLUE).all()


def test_a_camera_mpo_gives_its_main_picture_without_a_note(tmp_path):
    main, preview = Image.fromarray(photo()), Image.new("RGB", (48, 32), BLUE)
    main.save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=[preview])
    with Image.open(tmp_path / "camera.jpg") as im:
        assert im.format == "MPO" and im.n_frames == 2
    a, notes = load_image(tmp_path / "camera.jpg")
    assert notes == [] and np.abs(a.astype(int) - photo()).mean() < 6


def test_decoding_in_threads_leaves_pillows_own_limit_as_it_was(tmp_path):
    # the limit is switched off while tessera decodes (it checks its own); threads overlapping
    # must not leave it off for everyone else
    from concurrent.futures import ThreadPoolExecutor

    saved = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: load_image(path), range(64)))
    assert Image.MAX_IMAGE_PIXELS == saved and saved is not None
