"""Stage 1: cut square patches out of one image."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tessera.files import atomic, write_json
from tessera.images import DEFAULT_MAX_MEGAPIXELS, UnusableImage, load_image


def extract(image, size, stride, max_patches=None, seed=0):
    """All size x size patches of an (H, W, C) array on a grid with the given stride.

    Vectorised: a strided view of the image, copied once. When max_patches is set and there are
    more, a seeded random subset is kept so that one huge photo does not outweigh the others.
    Returns a uint8 array (N, size, size, C); N is 0 for an image smaller than one patch.
    """
    h, w, c = image.shape
    if h < size or w < size:
        return np.zeros((0, size, size, c), dtype=np.uint8)
    view = sliding_window_view(image, (size, size, c))[::stride, ::stride, 0]
    rows, cols = view.shape[:2]
    n = rows * cols
    if max_patches is not None and n > max_patches:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_patches, replace=False))
        return np.ascontiguousarray(view.reshape(n, size, size, c)[keep])
    return np.ascontiguousarray(view).reshape(n, size, size, c)


def grid_positions(height, width, size, stride):
    """Top-left corners of the patch grid, in the order extract() cuts the patches."""
    ys, xs = np.arange(0, height - size + 1, stride), np.arange(0, width - size + 1, stride)
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)


def run(
    image_path,
    image_id,
    out_npy,
    out_json,
    size,
    stride,
    max_patches,
    seed,
    name=None,
    max_megapixels=DEFAULT_MAX_MEGAPIXELS,
    sampling="grid",
    target_path=None,
    target_name=None,
):
    """Decode one image and write its patches; a file that cannot be used is recorded, not raised.

    With sampling "random" the file holds the decoded image itself, from which training cuts fresh
    crops every epoch (as many as the grid would give); validation cuts it on the grid. name is
    the file as the user knows it (its path inside the images folder), shown in the report;
    max_megapixels is the decompression-bomb limit (None for none).

    With a target (task paired: the clean partner of a damaged image), each patch holds the clean
    pixels in channels 0-2 and the damaged ones at the same place in channels 3-5 (the order
    tessera.tasks gives a 6-channel patch): one file, cut once, so the two sides cannot drift
    apart and training reads them as it reads any patch.
    """
    info = {"image": image_id, "path": name or str(image_path)}
    channels = 3 if target_path is None else 6
    try:
        image, notes = load_image(image_path, max_megapixels)
        if target_path is not None:
            clean = _partner(image, name or image_path, target_path, target_name, max_megapixels)
            image = np.concatenate([clean, image], axis=2)
    except UnusableImage as e:
        patches = np.zeros((0, size, size, channels), dtype=np.uint8)
        info.update(status="skipped", reason=e.reason, patches=0)
    else:
        count = len(grid_positions(image.shape[0], image.shape[1], size, stride))
        count = count if max_patches is None else min(count, max_patches)
        if sampling == "random":
            patches = image if count else np.zeros((0, size, size, channels), dtype=np.uint8)
        else:
            patches = extract(image, size, stride, max_patches, seed)
        info.update(
            status="ok",
            height=image.shape[0],
            width=image.shape[1],
            patches=count,
            notes=notes,
        )
        if count == 0:
            info["notes"] = notes + [
                f"smaller than one {size}x{size} patch: used for reconstruction only"
            ]
    if target_path is not None:
        info["target"] = target_name or str(target_path)
    with atomic(out_npy) as tmp:
        np.save(tmp, patches)
    write_json(out_json, info, ensure_ascii=False)
    return info


def _partner(image, name, target_path, target_name, max_megapixels):
    """The clean partner of a damaged image, which must decode and have the same size; otherwise
    the pair is skipped with a reason naming both files."""
    shown = target_name or str(target_path)
    try:
        clean, _ = load_image(target_path, max_megapixels)
    except UnusableImage as e:
        raise UnusableImage(name, f"its target '{shown}' cannot be used: {e.reason}") from None
    if clean.shape != image.shape:
        raise UnusableImage(
            name,
            f"its target '{shown}' is {clean.shape[1]}x{clean.shape[0]} pixels, the image "
            f"{image.shape[1]}x{image.shape[0]}: a pair must have one size",
        )
    return clean
