"""Finding images in a folder and decoding them to RGB uint8 arrays."""

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tessera import TesseraError

# Extensions Pillow decodes that users keep photos and screenshots in; compared case-insensitively.
IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .gif .bmp .tif .tiff .webp .ppm .pgm .pbm .pnm .tga .ico".split()
)

# Characters kept as they are in an image id; anything else becomes "_" and the id gets a hash suffix.
_UNSAFE = re.compile(r"[^\w.\-]", re.UNICODE)


@dataclass(frozen=True)
class Found:
    """One entry of an image folder: a usable candidate (reason is None) or a skipped one."""

    path: str  # relative to the folder, with "/" separators
    image_id: str | None
    reason: str | None


def image_id(relpath):
    """A file-system- and Snakemake-safe id for an image, recognisable as its file name.

    The id keeps the name and extension (so a.jpg and a.png never collide) and replaces characters
    that are unsafe in paths, shells or wildcards with "_"; when it had to replace anything, a short
    hash of the original name keeps two such names apart. The id depends on the name alone, so adding
    or removing other images never renames an image's outputs.
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


def discover(folder, recursive=True):
    """List a folder's images without decoding them (cheap enough for Snakefile parse time).

    Returns Found entries sorted by path. Hidden files and folders (".DS_Store", "._x.jpg"), files
    with an extension that is not an image's, and folders whose name looks like an image are
    reported as skipped with the reason; decoding problems are found later, in the patch jobs.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise TesseraError(
            f"images folder '{folder}' {what}: set 'images' in config/config.yaml "
            "or pass --config images=/path/to/folder"
        )
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for d in sorted(dirnames):
            if Path(d).suffix.lower() in IMAGE_EXTENSIONS and not d.startswith("."):
                found.append(Found(prefix + d, None, "a folder, not an image file"))
        if recursive:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        else:
            dirnames[:] = []
        for name in filenames:
            rel = prefix + name
            if name.startswith("."):
                found.append(Found(rel, None, "hidden file"))
            elif Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                found.append(Found(rel, None, "not an image file extension"))
            else:
                found.append(Found(rel, image_id(rel), None))
    found.sort(key=lambda f: f.path)
    _check_unique(found)
    return found


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


def load_image(path):
    """Decode an image file to an upright RGB uint8 array (height, width, 3).

    Returns (array, notes): notes lists conversions a user may want to know about. Raises
    TesseraError with the reason when the file cannot be decoded.
    """
    notes = []
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            array = _to_rgb8(im)
    except TesseraError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise TesseraError(f"cannot decode '{path}': {e}") from e
    return array, notes


def _to_rgb8(im):
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("L") clips 16-bit values to 0..255; scale to 8 bits instead.
        a = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if a.max() > 255 or im.mode.startswith("I;16") else 255.0
        gray = np.clip(np.rint(a / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def save_png(array, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
