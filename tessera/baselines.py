"""Stage: classical methods on the same images and noise, so the autoencoder's figures have a scale.

In denoise mode: the noisy input itself, a Gaussian blur, a median filter and non-local means
(scikit-image), each with its parameter chosen on the training images. In reconstruct mode: JPEG at
quality 75 and 95 (Pillow), with its size in bytes per pixel, the price a learned code must beat.
"""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from tessera import noise
from tessera.images import load_image

TUNE_CROP = 256  # parameters are chosen on centre crops of the training images: quick, and enough
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


def _u8(a):
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _scores(clean, out):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    side = min(clean.shape[:2])
    win = min(7, side if side % 2 else side - 1)
    ssim = (
        structural_similarity(clean, out, channel_axis=2, data_range=255, win_size=win)
        if win >= 3
        else float("nan")
    )
    return float(peak_signal_noise_ratio(clean, out, data_range=255)), float(ssim)


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
        return name, value, np.mean([_scores(c, _u8(fn(n, value, level)))[0] for c, n in noisy])

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


def evaluate(image_id, clean, task, params):
    """Rows (image, method, parameter, psnr, ssim, bytes_per_pixel) for one image."""
    rows = []
    if task["kind"] == "denoise":
        noisy = noise.fixed(clean, task, image_id)
        rows.append(("noisy input", None, *_scores(clean, noisy), None))
        for name, value in params.items():
            out = DENOISERS[name][0](noisy, value, noise.level(task))
            rows.append((name, value, *_scores(clean, _u8(out)), None))
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


def run(split_tsv, sources, out_tsv, out_json, task, max_megapixels=None, threads=1):
    """Choose parameters on the training images, then score every usable image."""
    split = pd.read_csv(split_tsv, sep="\t", keep_default_na=False)
    by_id = dict(zip(split.image, split.split))
    images = {i: load_image(p, max_megapixels=max_megapixels)[0] for i, p in sources.items()}
    training = [(i, a) for i, a in images.items() if by_id.get(i) == "train"]
    params = tune(training, task, threads) if task["kind"] == "denoise" else {}
    with ThreadPoolExecutor(threads) as pool:
        rows = [
            r for rs in pool.map(lambda kv: evaluate(*kv, task, params), images.items()) for r in rs
        ]
    table = pd.DataFrame(rows)
    table.insert(1, "split", table.image.map(by_id))
    Path(out_tsv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_tsv, sep="\t", index=False)
    Path(out_json).write_text(json.dumps({"task": task, "parameters": params}, indent=1) + "\n")
    return table, params
