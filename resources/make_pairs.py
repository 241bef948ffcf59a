"""Make a folder of image pairs from the sample photographs, for task.kind: paired.

    python resources/make_pairs.py [OUT] [--seed N] [--qualities LOW HIGH] [--sigma S]

writes OUT/clean/<name>.png (each sample photo, decoded to RGB and stored losslessly) and
OUT/damaged/<name>.png (the same photo saved as JPEG at a quality from 15 to 25, decoded, with
mild Gaussian noise of sigma 4 added, stored losslessly; --qualities and --sigma change them), OUT being results/pairs by default. The
damage is drawn from the seed and each photo's name alone, so the same command always writes the
same pairs. config/paired.yaml trains on results/pairs.
"""

import argparse
import hashlib
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "sample_images"
QUALITIES = (15, 25)  # JPEG quality range, both ends included
SIGMA = 4.0  # Gaussian noise after decoding, in 0..255 units


def damage(clean, name, seed, qualities=QUALITIES, sigma=SIGMA):
    """The damaged copy of an RGB uint8 photo: JPEG at a quality drawn from qualities (both ends
    included), then Gaussian noise of the given sigma; returns (damaged, quality)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    quality = int(rng.integers(qualities[0], qualities[1] + 1))
    buf = io.BytesIO()
    Image.fromarray(clean).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
    noisy = decoded + rng.standard_normal(decoded.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), quality


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def save(array, path):
    # written under a temporary name and renamed: an interrupted run leaves no half-written image
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default="results/pairs", help="folder to write to")
    parser.add_argument("--seed", type=int, default=0, help="seed of the damage (default 0)")
    parser.add_argument(
        "--qualities",
        type=int,
        nargs=2,
        default=QUALITIES,
        metavar=("LOW", "HIGH"),
        help="range of the JPEG quality (default %(default)s)",
    )
    parser.add_argument(
        "--sigma", type=float, default=SIGMA, help="noise sigma, 0..255 units (default %(default)s)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    for side in ("clean", "damaged"):
        (out / side).mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    for photo in photos:
        with Image.open(photo) as im:
            clean = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        damaged, quality = damage(clean, photo.name, args.seed, args.qualities, args.sigma)
        name = photo.stem + ".png"
        save(clean, out / "clean" / name)
        save(damaged, out / "damaged" / name)
        print(
            f"{name}: JPEG quality {quality} + noise sigma {SIGMA:g}: {psnr(clean, damaged):.2f} dB"
        )
    print(f"wrote {len(photos)} pairs to {out}/damaged and {out}/clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
