"""Finding images in a folder and decoding them to RGB uint8 arrays."""

import contextlib
import hashlib
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from tessera import TesseraError
from tessera.files import atomic

# Extensions Pillow decodes that users keep photos and screenshots in; compared case-insensitively.
IMAGE_EXTENSIONS = frozenset(
    (
        ".png .jpg .jpeg .jpe .jfif .gif .bmp .tif .tiff .webp .avif "
        ".ppm .pgm .pbm .pnm .tga .ico"
    ).split()
)
# Image files Pillow cannot decode: named as such in the skipped list, with what to do.
UNSUPPORTED_EXTENSIONS = frozenset(
    ".heic .heif .svg .psd .dng .cr2 .cr3 .nef .arw .raf .orf .rw2 .jxl .jp2".split()
)
# The decoders those extensions need. Content decides the format (a JPEG named .png is fine), but
# only among these (the JPEG reader also gives MPO): Pillow's EPS reader would run Ghostscript.
_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "ICO")

# Images with a side below this are skipped: nothing to learn from, nothing to measure.
MIN_SIDE = 8
# Transparent pixels are composited on this colour (white, as a web page shows them).
BACKGROUND = (255, 255, 255)
# Refused unless the user raises max_megapixels: about Pillow's own decompression-bomb threshold.
DEFAULT_MAX_MEGAPIXELS = 100

_HIGH_DEPTH_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

# Characters kept as they are in an image id; a run of others becomes one "_", and the id gets a
# hash suffix.
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


class UnusableImage(TesseraError):
    """A file in the images folder that cannot be used; the run skips it and says why."""

    def __init__(self, path, reason):
        super().__init__(f"cannot use '{path}': {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Found:
    """One entry of an image folder: a usable candidate (reason is None) or a skipped one."""

    path: str  # relative to the folder, with "/" separators
    image_id: str | None
    reason: str | None


def image_id(relpath):
    """A file-system- and Snakemake-safe id for an image, recognisable as its file name.

    The id keeps the name and extension (so a.jpg and a.png never collide) and replaces each run of
    characters unsafe in paths, shells or wildcards with one "_"; when it had to replace any, a short
    hash of the original name keeps two such names apart. The id depends on the name alone, so
    adding or removing other images never renames an image's outputs.
    """
    nfc = unicodedata.normalize("NFC", relpath)
    parts = [_UNSAFE.sub("_", p) for p in nfc.split("/")]
    parts = ["_" + p[1:] if p.startswith(".") else p for p in parts]
    safe = "/".join(parts)
    if safe != relpath:
        digest = hashlib.sha1(relpath.encode("utf-8", "surrogateescape")).hexdigest()[:6]
        stem, dot, ext = safe.rpartition(".")
        safe = f"{stem}~{digest}{dot}{ext}" if dot else f"{safe}~{digest}"
    return safe


def discover(folder, recursive=True, leave_out=(), key="images"):
    """List a folder's images without decoding them (cheap enough for Snakefile parse time).

    Returns Found entries sorted by path. Hidden files (".DS_Store", "._x.jpg"), files with an
    extension that is not an image's (or is one of an image format Pillow cannot read), folders
    whose name looks like an image and broken links are reported as skipped with the reason; hidden
    folders are not read, nor the folders given in leave_out (the workflow's own outputs, which
    would otherwise come back as inputs of the next run). Decoding problems are found later, in the
    patch jobs.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise TesseraError(
            f"{key} folder '{folder}' {what}: set '{key}' in config/config.yaml "
            f"or pass --config {key}=/path/to/folder"
        )
    found = []
    outputs = {os.path.realpath(p) for p in leave_out}

    def unreadable(error):
        rel = os.path.relpath(error.filename, root).replace(os.sep, "/")
        found.append(Found(rel, None, f"folder cannot be read: {error.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for d in sorted(dirnames):
            if Path(d).suffix.lower() in IMAGE_EXTENSIONS and not d.startswith("."):
                found.append(Found(prefix + d, None, "a folder, not an image file"))
        if recursive:
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".")
                and os.path.realpath(os.path.join(dirpath, d)) not in outputs
            ]
        else:
            dirnames[:] = []
        for name in filenames:
            rel = prefix + name
            ext = Path(name).suffix.lower()
            if name.startswith("."):
                found.append(Found(rel, None, "hidden file"))
            elif ext in UNSUPPORTED_EXTENSIONS:
                found.append(
                    Found(rel, None, f"{ext} images cannot be read: convert it to PNG or JPEG")
                )
            elif ext not in IMAGE_EXTENSIONS:
                found.append(Found(rel, None, "not an image file extension"))
            # One stat per image: a broken link or a pipe would stop the run or hang its job.
            elif not os.path.isfile(os.path.join(dirpath, name)):
                found.append(Found(rel, None, "not a regular file (a broken link?)"))
            else:
                found.append(Found(rel, image_id(rel), None))
    found.sort(key=lambda f: f.path)
    _check_unique(found)
    return found


def pair(found, images_folder, targets, targets_folder):
    """Match each usable image with the target of the same path inside the targets folder
    (extension included: a.jpg pairs with a.jpg only), both lists as discover() gives them.

    Returns (found, partners, orphans): found with every image lacking a usable partner turned into
    a skipped entry whose reason names both files; {image id: the partner's path inside the targets
    folder}; and (target path, reason) for each target without an image. Sizes and decoding are
    checked later, in the patch jobs.
    """
    by_path = {t.path: t for t in targets}
    stems = {}
    for t in targets:
        stems.setdefault(t.path.rpartition(".")[0], []).append(t.path)
    out, partners, taken = [], {}, set()
    for f in found:
        t = by_path.get(f.path)
        if f.image_id is None:
            out.append(f)
            taken.add(f.path)
            continue
        clean = os.path.join(targets_folder, f.path)
        if t is not None and t.image_id is not None:
            partners[f.image_id] = t.path
            taken.add(t.path)
            out.append(f)
            continue
        if t is not None:
            reason = f"its target '{clean}' cannot be used: {t.reason}"
            taken.add(t.path)
        else:
            reason = f"no target '{clean}' for it in the targets folder"
            other = [p for p in stems.get(f.path.rpartition(".")[0], []) if p != f.path]
            if other:
                reason += f" ('{other[0]}' has another extension: the extensions must match)"
        out.append(Found(f.path, None, reason))
    orphans = [
        (
            os.path.join(targets_folder, t.path),
            f"a target without a damaged image: no '{os.path.join(images_folder, t.path)}'",
        )
        for t in targets
        if t.image_id is not None and t.path not in taken
    ]
    return out, partners, orphans


def _check_unique(found):
    seen = {}
    for f in found:
        if f.image_id is None:
            continue
        key = f.image_id.casefold()  # two ids differing only by case collide on macOS and Windows
        if key in seen:
            raise TesseraError(
                f"images '{seen[key]}' and '{f.path}' would share outputs: rename one of them"
            )
        seen[key] = f.path


def find_masks(folder, paths, recursive=True):
    """{image path: its mask file}: the mask of an image is the image of the same path inside
    folder whatever its extension (photo.jpg's is photo.png), as LaMa and OpenCV keep masks apart
    from the photos. Images without one are left out."""
    by_stem = {}
    for entry in discover(folder, recursive, key="masks"):
        if entry.image_id is not None:
            by_stem.setdefault(entry.path.rpartition(".")[0], entry.path)
    found = {}
    for path in paths:
        stem = path.rpartition(".")[0]
        if stem in by_stem:
            found[path] = os.path.join(folder, by_stem[stem])
    return found


def load_mask(path, shape, image=None):
    """A mask image as a bool array, True where it is light (white: missing, as LaMa and OpenCV
    draw masks; any colour is read as its gray, above mid-gray). shape: the (height, width) of the
    image it belongs to (named by image), which the mask must match."""
    of = f" of image '{image}'" if image else ""
    try:
        mask, _ = load_image(path)
    except UnusableImage as e:  # the image itself is fine: name the mask
        raise TesseraError(f"mask '{path}'{of} cannot be used: {e.reason}") from None
    return holes_of_mask(mask, shape, f"mask '{path}'{of}")


def holes_of_mask(mask, shape, name="mask"):
    """The holes of a decoded mask (an RGB uint8 array, or already a bool array): True where it is
    lighter than mid-gray. Its (height, width) must be shape, the image's; name says which mask."""
    if mask.dtype != bool:
        mask = np.asarray(Image.fromarray(mask).convert("L")) >= 128
    if mask.shape[:2] != tuple(shape):
        raise TesseraError(
            f"{name} is {mask.shape[1]}x{mask.shape[0]}, the image {shape[1]}x{shape[0]}: a mask "
            "must have its image's width and height"
        )
    return mask


def load_image(path, max_megapixels=None):
    """Decode an image file to an upright RGB uint8 array (height, width, 3), as a viewer shows it.

    Returns (array, notes): notes lists conversions a user may want to know about (a multi-frame
    file of which only the first frame is used). Raises UnusableImage, naming the file and the
    reason, when the file cannot be used: empty, not an image, truncated or corrupt, smaller than
    MIN_SIDE, or over max_megapixels (the decompression-bomb guard; None for no limit). The patch
    stage passes the configured limit; later stages only ever see images it admitted.
    """
    path = Path(path)
    notes = []
    try:
        if path.stat().st_size == 0:
            raise UnusableImage(path, "empty file (0 bytes)")
        with _pillow_pixel_guard_off(), Image.open(path, formats=_FORMATS) as im:
            _check_size(path, im.size, max_megapixels)
            frames = getattr(im, "n_frames", 1)
            # An MPO is a camera JPEG with extra pictures (previews, depth): its first is the photo.
            if frames > 1 and im.format != "MPO":
                notes.append(f"has {frames} frames (an animation or pages): used the first only")
            im.load()
            # Pillow assumes Adobe's inverted CMYK in every JPEG; without the Adobe marker the
            # values are plain, as viewers read them.
            if im.mode == "CMYK" and im.format in ("JPEG", "MPO") and "adobe" not in im.info:
                im = ImageChops.invert(im)
            ImageOps.exif_transpose(im, in_place=True)
            array = _to_rgb8(im)
    except TesseraError:
        raise
    except UnidentifiedImageError:
        raise UnusableImage(path, "not an image, or in a format Tessera cannot read") from None
    except Exception as e:  # noqa: BLE001
        # A corrupt file can make a decoder fail in many ways (OSError, struct.error, IndexError,
        # MemoryError...); each is the file's problem, not the workflow's, so it is a skip reason.
        detail = " ".join(str(e).split()) or type(e).__name__
        raise UnusableImage(path, f"cannot decode: {detail}") from e
    return array, notes


def _check_size(path, size, max_megapixels):
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise UnusableImage(
            path, f"too small: {w}x{h} pixels, both sides must be at least {MIN_SIDE}"
        )
    if max_megapixels is not None and w * h > max_megapixels * 1e6:
        raise UnusableImage(
            path,
            f"{w}x{h} is {_megapixels(w * h)} megapixels, over the max_megapixels limit of "
            f"{max_megapixels:g} (a guard against decompression bombs); raise max_megapixels "
            "in the config to use it",
        )


def _megapixels(pixels):
    mp = pixels / 1e6
    return f"{mp:,.0f}" if mp >= 10 else f"{mp:.2g}"


_GUARD = {"lock": threading.Lock(), "users": 0, "saved": None}


@contextlib.contextmanager
def _pillow_pixel_guard_off():
    # The pixel limit is max_megapixels, checked from the header before decoding; Pillow's own
    # global limit would refuse images the user has allowed. It is one global, and images may be
    # decoded in several threads at once: the last one out puts it back.
    with _GUARD["lock"]:
        if _GUARD["users"] == 0:
            _GUARD["saved"] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _GUARD["users"] += 1
    try:
        yield
    finally:
        with _GUARD["lock"]:
            _GUARD["users"] -= 1
            if _GUARD["users"] == 0:
                Image.MAX_IMAGE_PIXELS = _GUARD["saved"]


def _to_rgb8(im):
    if im.mode in _HIGH_DEPTH_GRAY:
        # Pillow's convert("L") clips values above 255, which turns a 16-bit image almost white.
        a = np.nan_to_num(np.asarray(im, dtype=np.float32))
        if im.mode.startswith("I;16"):
            top = 65535.0
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        else:
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        # Transparent pixels hold arbitrary colours; composite them on the background a viewer
        # (a web page) shows, so the model learns what people see.
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, BACKGROUND + (255,)), rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def save_png(array, path):
    with atomic(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


DIHEDRAL = 8  # the identity, three quarter turns, and each of them mirrored


def dihedral(image, k, axes=(0, 1)):
    """The k-th of the 8 flips and quarter turns (k in 0..7) of the plane given by axes."""
    turned = np.rot90(image, k % 4, axes=axes)
    return np.flip(turned, axis=axes[1]) if k >= 4 else turned


def undo_dihedral(image, k, axes=(0, 1)):
    """The inverse of dihedral(image, k, axes)."""
    flipped = np.flip(image, axis=axes[1]) if k >= 4 else image
    return np.rot90(flipped, -(k % 4), axes=axes)
