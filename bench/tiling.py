"""Tiled reconstruction speed: megapixels of output per second on one image, model and tile plan.

(a) the blog post's way: one model.predict call per tile;
(b) tessera's tiler, start to finish (padding, fixed-shape batches, stitching);
(c) one model.predict call on all of the plan's tiles at once (cut beforehand, not timed).

    python bench/tiling.py [--preset compact] [--image resources/sample_images/coffee.png]
                           [--size 4000x3000] [--tile 64] [--batch 8] [--repeat 3]

--size resizes the image first (Pillow) to measure a large photo. The model is untrained: speed
does not depend on the weights.

    python bench/tiling.py --valid-twin [--depth 8] [--width 32] [--tile 64]

instead measures the blog post's "32 in, 24 out": a stack of `depth` 3x3 convolutions with same
padding, tiled in crop mode (each tile computed whole, its margin thrown away), against its valid
twin (the same layers and weights, padding valid) tiled exactly (each tile gives only its share).
It prints the convolution output pixels each computes, the wall time, and how far apart the two
rebuilt images are (float rounding: they are the same function on the same pixels).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

from tessera import backend, models  # noqa: E402
from tessera import reconstruct as rec  # noqa: E402
from tessera.images import load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def conv_stack(depth, width, padding):
    import keras

    keras.utils.set_random_seed(0)
    convs = [keras.layers.Conv2D(width, 3, padding=padding, activation="relu")]
    convs += [
        keras.layers.Conv2D(width, 3, padding=padding, activation="relu") for _ in range(depth - 2)
    ]
    convs.append(keras.layers.Conv2D(3, 3, padding=padding))
    return keras.Sequential([keras.Input((None, None, 3)), *convs], name=f"{padding}_{depth}")


def computed_pixels(model, plan):
    """Output positions of every convolution, summed over the plan's tiles."""
    shape, total = (1, plan.tile, plan.tile, 3), 0
    for layer in model.layers:
        shape = layer.compute_output_shape(shape)
        if type(layer).__name__ == "Conv2D":
            total += shape[1] * shape[2]
    return total * plan.count


def valid_twin(args, image):
    same = conv_stack(args.depth, args.width, "same")
    valid = conv_stack(args.depth, args.width, "valid")
    valid.set_weights(same.get_weights())
    mp = image.shape[0] * image.shape[1] / 1e6
    runs = {}
    for name, model in (("same padding, crop tiling", same), ("valid twin, exact tiling", valid)):
        summary = models.describe(model)
        plan = rec.plan_for(image, summary, args.tile, None, "crop")
        out = rec.reconstruct(model, image, plan, args.batch)  # traces once, untimed
        runs[name] = [model, summary, plan, out, []]
    # interleaved, so that a machine shared with other jobs slows both alike; the best of each
    for _ in range(args.repeat):
        for model, _, plan, _, times in runs.values():
            times.append(best_of(1, lambda: rec.reconstruct(model, image, plan, args.batch)))
    rows = {}
    for name, (model, summary, plan, out, times) in runs.items():
        seconds = min(times)
        rows[name] = (plan, computed_pixels(model, plan), seconds, out)
        print(
            f"{name:28} radius {summary['receptive_radius']}, border {plan.border}, margin "
            f"{plan.margin}, {plan.count} tiles of {plan.tile} giving {plan.out_stride} each: "
            f"{computed_pixels(model, plan) / 1e6:8.2f} M conv pixels, {seconds:7.3f} s "
            f"({mp / seconds:.3f} MP/s)"
        )
    (_, pa, ta, oa), (_, pb, tb, ob) = rows.values()
    print(
        f"valid twin / same: {pb / pa:.3f} of the computed pixels, {tb / ta:.3f} of the time; "
        f"outputs differ by at most {np.abs(oa - ob).max():.2e} (outputs up to "
        f"{np.abs(oa).max():.2f})"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="compact")
    ap.add_argument("--image", default=str(ROOT / "resources" / "sample_images" / "coffee.png"))
    ap.add_argument("--size", default=None, help="WIDTHxHEIGHT to resize to first")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-per-tile", action="store_true", help="skip (a), slow on big images")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--valid-twin", action="store_true", help="valid against same padding")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    args = ap.parse_args()
    import keras

    backend.configure(args.threads)
    image, _ = load_image(args.image)
    if args.size:
        from PIL import Image

        w, h = map(int, args.size.split("x"))
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    if args.valid_twin:
        print(
            f"{keras.config.backend()} on {backend.devices()}; {args.depth} 3x3 convolutions of "
            f"{args.width} channels; image {image.shape[1]}x{image.shape[0]}; batch {args.batch}"
        )
        return valid_twin(args, image)
    model = models.build(args.preset)
    info = models.describe(model)
    margin = rec.default_margin(info["receptive_radius"], info["size_multiple"])
    plan = rec.make_plan(*image.shape[:2], args.tile, margin, info["size_multiple"], "crop")
    mp = image.shape[0] * image.shape[1] / 1e6
    canvas = rec.pad(image, plan)
    view = sliding_window_view(canvas, (plan.tile, plan.tile, 3))[:: plan.stride, :: plan.stride, 0]
    tiles = view.reshape(-1, plan.tile, plan.tile, 3).astype(np.float32) / np.float32(255)

    print(
        f"{keras.config.backend()} on {backend.devices()}; preset {args.preset}; image "
        f"{image.shape[1]}x{image.shape[0]} ({mp:.2f} MP); {plan.count} tiles of {plan.tile}, "
        f"margin {plan.margin}, batch {args.batch}"
    )
    results = {}

    def per_tile():
        for t in tiles:
            model.predict(t[None], verbose=0)

    def tessera_tiler():
        rec.reconstruct(model, image, plan, args.batch)

    def one_call():
        model.predict(tiles, batch_size=args.batch, verbose=0)

    tessera_tiler()  # trace and warm up once, like the other two below
    one_call()
    if not args.skip_per_tile:
        model.predict(tiles[:1], verbose=0)
        results["(a) one predict per tile"] = best_of(1, per_tile)
    results["(b) tessera tiler"] = best_of(args.repeat, tessera_tiler)
    results["(c) one predict, all tiles"] = best_of(args.repeat, one_call)
    for name, seconds in results.items():
        print(f"{name:30} {seconds:8.3f} s {mp / seconds:9.3f} MP/s")
    b = results["(b) tessera tiler"]
    if "(a) one predict per tile" in results:
        print(f"(b) / (a): {results['(a) one predict per tile'] / b:.1f}x")
    print(f"(b) / (c): {results['(c) one predict, all tiles'] / b:.3f}")


if __name__ == "__main__":
    main()
