"""Stage: classical methods on the same images and noise, so the autoencoder's figures have a scale.

In denoise mode: the noisy input itself, a Gaussian blur, a median filter and non-local means
(scikit-image), each with its parameter chosen on the training images. In reconstruct mode: JPEG at
quality 75 and 95 (Pillow), with its size in bytes per pixel, the price a learned code must beat.
In paired mode: the damaged image itself, measured against its clean partner.
"""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from tessera import noise
from tessera.images import load_image
from tessera.measure import metrics, to_uint8
from tessera.split import read_table

TUNE_CROP = 256  # parameters are chosen on centre crops of the training images: quick, and enough
TUNE_IMAGES = 16  # on at most this many of them, spread over the folder, however large it is
JPEG_QUALITIES = (75, 95)


def _gaussian(img, sigma, _level):
    from skimage.filters import gaussian

    return gaussian(img, sigma=sigma, channel_axis=2, preserve_range=True)


def _median(img, size, _level):
    from skimage.filters import median

    footprint = np.ones((size, size), bool)
    return np.stack([median(img[..., c], footprint) for c in range(img.shape[2])], axis=2)


def _nlm(img, h, sigma):
    from skimage.restoration import denoise_nl_means

    f = img.astype(np.float64) / 255
    out = denoise_nl_means(
        f, h=h * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=2
    )
    return out * 255


# name -> (function(noisy, parameter, noise level), the parameter values tried on training images);
# the non-local means parameter is its filtering strength h as a multiple of the noise level.
DENOISERS = {
    "gaussian blur": (_gaussian, (0.5, 0.75, 1.0, 1.5, 2.0)),
    "median filter": (_median, (3, 5, 7)),
    "non-local means": (_nlm, (0.4, 0.5, 0.6, 0.8, 1.0)),
}


def _scores(clean, out):
    m = metrics(clean, out)
    return m["psnr"], m["ssim"]


def _crop(image, size=TUNE_CROP):
    h, w = image.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y : y + size, x : x + size]


def tune(training, task, threads=1):
    """The parameter of each denoiser with the best mean PSNR on the training images.

    training: (image id, clean uint8 array) pairs. Returns {name: parameter}.
    """
    crops = [(i, _crop(c)) for i, c in training]
    noisy = [(c, noise.fixed(c, task, i)) for i, c in crops]

    def score(item):
        name, value = item
        fn = DENOISERS[name][0]
        level = noise.level(task)
        return (
            name,
            value,
            np.mean([_scores(c, to_uint8(fn(n, value, level), scale=1))[0] for c, n in noisy]),
        )

    grid = [(name, v) for name, (_, values) in DENOISERS.items() for v in values]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(score, grid))
    best = {}
    for name, value, psnr in results:
        if name not in best or psnr > best[name][1]:
            best[name] = (value, psnr)
    return {name: value for name, (value, _) in best.items()}


def jpeg(clean, quality):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(clean).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return decoded, len(buf.getvalue()) / (clean.shape[0] * clean.shape[1])


def evaluate(image_id, clean, task, params, damaged=None):
    """Rows (image, method, parameter, psnr, ssim, bytes_per_pixel) for one image (with task
    paired, clean is the image's target and damaged the image)."""
    rows = []
    if task["kind"] == "paired":
        rows.append(("damaged input", None, *_scores(clean, damaged), None))
    elif task["kind"] == "denoise":
        noisy = noise.fixed(clean, task, image_id)
        rows.append(("noisy input", None, *_scores(clean, noisy), None))
        for name, value in params.items():
            out = DENOISERS[name][0](noisy, value, noise.level(task))
            rows.append((name, value, *_scores(clean, to_uint8(out, scale=1)), None))
    else:
        for q in JPEG_QUALITIES:
            decoded, bpp = jpeg(clean, q)
            rows.append((f"JPEG q{q}", q, *_scores(clean, decoded), round(bpp, 4)))
    return [
        dict(
            zip(("image", "method", "parameter", "psnr", "ssim", "bytes_per_pixel"), (image_id, *r))
        )
        for r in rows
    ]


def run(split_tsv, sources, out_tsv, out_json, task, max_megapixels=None, threads=1, targets=None):
    """Choose parameters on the training images, then score every usable image, a few images in
    memory at a time (one per thread), however many there are. targets: {image id: its clean
    partner} with task paired."""
    split = read_table(split_tsv)
    by_id = dict(zip(split.image, split.split))
    params = {}
    if task["kind"] == "denoise":
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
    Path(out_tsv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_tsv, sep="\t", index=False)
    Path(out_json).write_text(json.dumps({"task": task, "parameters": params}, indent=1) + "\n")
    return table, params
