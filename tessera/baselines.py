"""Stage: classical methods on the same images and damage, so the autoencoder's figures have a scale.

Which methods apply is the task's to say (tessera.tasks): in denoise mode the noisy input itself, a
Gaussian blur, a median filter and non-local means (scikit-image); in restore mode the damaged
input and the methods for its degradations; each with its parameter chosen on the training images.
In reconstruct mode: JPEG at quality 75 and 95 (Pillow), with its size in bytes per pixel, the
price a learned code must beat. In paired mode: the damaged image itself, against its target.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from tessera import tasks
from tessera.files import write_json, write_tsv
from tessera.images import load_image
from tessera.measure import metrics, to_uint8
from tessera.split import read_table
from tessera.tasks.denoise import DENOISERS  # noqa: F401  (the denoise task's methods)
from tessera.tasks.reconstruct import JPEG_QUALITIES, jpeg  # noqa: F401

TUNE_CROP = 256  # parameters are chosen on centre crops of the training images: quick, and enough
TUNE_IMAGES = 16  # on at most this many of them, spread over the folder, however large it is
COLUMNS = ("image", "method", "parameter", "psnr", "ssim", "bytes_per_pixel")


def _scores(clean, out):
    m = metrics(clean, out)
    return m["psnr"], m["ssim"]


def _crop(image, size=TUNE_CROP):
    h, w = image.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y : y + size, x : x + size]


def tune(training, task, threads=1):
    """The parameter of each of the task's classical methods with the best mean PSNR on the
    training images.

    training: (image id, clean uint8 array) pairs. Returns {name: parameter}.
    """
    kind = tasks.get(task)
    table = kind.baselines(task)
    crops = [(i, _crop(c)) for i, c in training]
    damaged = [(kind.truth(c, task), *kind.fixed(c, task, i)) for i, c in crops]

    def score(item):
        name, value = item
        fn = table[name][0]
        return (
            name,
            value,
            np.mean([_scores(c, to_uint8(fn(g, value, e), scale=1))[0] for c, g, e in damaged]),
        )

    grid = [(name, v) for name, (_, values) in table.items() for v in values]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(score, grid))
    best = {}
    for name, value, psnr in results:
        if name not in best or psnr > best[name][1]:
            best[name] = (value, psnr)
    return {name: value for name, (value, _) in best.items()}


def evaluate(image_id, clean, task, params, damaged=None):
    """Rows (image, method, parameter, psnr, ssim, bytes_per_pixel) for one image, and psnr_holes
    (PSNR inside the holes only) where the task made holes. With a pair, clean is the image's
    target and damaged the image: the input is that file, not a draw of the task's."""
    kind = tasks.get(task)
    if damaged is not None:
        found, extra = [(f"{kind.input_word} input", None, damaged, None)], None
    else:
        found, extra = kind.evaluate(image_id, clean, task, params)
        clean = kind.truth(clean, task)
    holes = tasks.holes_of(extra)
    rows = []
    for method, value, out, bpp in found:
        out = out if out.dtype == np.uint8 else to_uint8(out, scale=1)
        row = dict(zip(COLUMNS, (image_id, method, value, *_scores(clean, out), bpp)))
        if holes is not None:
            row["psnr_holes"] = tasks.psnr_inside(clean, out, holes)
        rows.append(row)
    return rows


def run(split_tsv, sources, out_tsv, out_json, task, max_megapixels=None, threads=1, targets=None):
    """Choose parameters on the training images, then score every usable image, a few images in
    memory at a time (one per thread), however many there are. targets: {image id: its clean
    partner} with task paired."""
    split = read_table(split_tsv)
    by_id = dict(zip(split.image, split.split))
    params = {}
    if tasks.get(task).baselines(task):
        train = sorted(i for i in sources if by_id.get(i) == "train")
        chosen = [
            train[k] for k in np.unique(np.linspace(0, len(train) - 1, TUNE_IMAGES).astype(int))
        ]
        load = [
            (i, _crop(load_image(sources[i], max_megapixels=max_megapixels)[0])) for i in chosen
        ]
        params = tune(load, task, threads)

    def score(item):
        image_id, path = item
        image = load_image(path, max_megapixels=max_megapixels)[0]
        if targets:
            clean = load_image(targets[image_id], max_megapixels=max_megapixels)[0]
            return evaluate(image_id, clean, task, params, damaged=image)
        return evaluate(image_id, image, task, params)

    with ThreadPoolExecutor(threads) as pool:
        rows = [r for rs in pool.map(score, sources.items()) for r in rs]
    table = pd.DataFrame(rows)
    table.insert(1, "split", table.image.map(by_id))
    write_tsv(table, out_tsv)
    write_json(out_json, {"task": task, "parameters": params})
    return table, params
