"""Stage 4: rebuild a whole image with a trained model, tile by tile, and measure the result."""

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tessera import TesseraError, models, tasks
from tessera.files import write_json
from tessera.measure import metrics, to_uint8
from tessera.images import DIHEDRAL, dihedral, load_image, save_png, undo_dihedral

MODES = ("crop", "blend", "naive")


@dataclass(frozen=True)
class Plan:
    """Where the tiles of one image go. Coordinates are in the padded canvas."""

    height: int
    width: int
    tile: int
    margin: int
    stride: int
    rows: int
    cols: int
    mode: str

    @property
    def canvas(self):
        return self.rows * self.stride + 2 * self.margin, self.cols * self.stride + 2 * self.margin

    @property
    def count(self):
        return self.rows * self.cols


def default_margin(radius, multiple):
    """The receptive radius rounded up so that the stride stays a multiple of the size multiple."""
    half = max(1, multiple // 2)
    return -(-radius // half) * half


def make_plan(height, width, tile, margin, multiple, mode="crop"):
    """Tiles of tile x tile pixels whose centres, tile - 2 * margin wide, cover the image.

    The image is reflect-padded by the margin on every side (and a little more at the bottom and
    right so that edge tiles are whole). In "naive" mode the margin is 0: the blog post's first
    attempt, whose tile edges show as seams.
    """
    if mode not in MODES:
        raise TesseraError(
            f"reconstruct.mode: unknown mode '{mode}'; choose one of: {', '.join(MODES)}"
        )
    if mode == "naive":
        margin = 0
    stride = tile - 2 * margin
    if tile % multiple:
        raise TesseraError(
            f"reconstruct.tile: {tile} is not a multiple of the model's size multiple {multiple}"
        )
    if stride <= 0 or stride % multiple:
        raise TesseraError(
            f"reconstruct.margin: tile {tile} - 2 x margin {margin} = {stride} must be a positive "
            f"multiple of the model's size multiple {multiple}; raise reconstruct.tile or lower the margin"
        )
    rows, cols = -(-height // stride), -(-width // stride)
    return Plan(height, width, tile, margin, stride, rows, cols, mode)


def pad(image, plan):
    """The image reflect-padded to the plan's canvas (same dtype)."""
    ch, cw = plan.canvas
    m = plan.margin
    widths = ((m, ch - m - plan.height), (m, cw - m - plan.width), (0, 0))
    return np.pad(image, widths, mode="reflect")


def window(tile, margin):
    """Blend weights: a Gaussian bump over the tile (as MONAI's sliding-window inference uses),
    kept above zero so that every pixel has weight."""
    sigma = max(tile / 8, 1.0)
    r = np.arange(tile) - (tile - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    w = np.outer(g, g)
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)[:, :, None]


def predict_tiles(model, canvas, plan, batch_size):
    """Yield (tile indices, model outputs) in batches of one fixed shape.

    The last batch is padded with copies so that the compiled function never sees a new shape.
    """
    view = sliding_window_view(canvas, (plan.tile, plan.tile, canvas.shape[2]))[
        :: plan.stride, :: plan.stride, 0
    ]
    for start in range(0, plan.count, batch_size):
        idx = np.arange(start, min(start + batch_size, plan.count))
        full = np.resize(idx, batch_size)  # repeats the indices to fill the last batch
        batch = view[full // plan.cols, full % plan.cols].astype(np.float32) / np.float32(255)
        out = np.asarray(model.predict_on_batch(batch))
        yield idx, out[: len(idx)]


def reconstruct(model, image, plan, batch_size=8):
    """Run the model over a uint8 image tile by tile; returns float32 (H, W, C) in the model's range."""
    canvas = pad(image, plan)
    h, w, c = image.shape
    m, s, t = plan.margin, plan.stride, plan.tile
    if plan.mode == "blend":
        acc = np.zeros(plan.canvas + (c,), np.float32)
        weight = np.zeros(plan.canvas + (1,), np.float32)
        win = window(t, m)
        for idx, out in predict_tiles(model, canvas, plan, batch_size):
            for k, tile_out in zip(idx, out):
                y, x = (k // plan.cols) * s, (k % plan.cols) * s
                acc[y : y + t, x : x + t] += tile_out * win
                weight[y : y + t, x : x + t] += win
        return (acc / weight)[m : m + h, m : m + w]
    result = np.empty((plan.rows * s, plan.cols * s, c), np.float32)
    for idx, out in predict_tiles(model, canvas, plan, batch_size):
        for k, tile_out in zip(idx, out):
            y, x = (k // plan.cols) * s, (k % plan.cols) * s
            result[y : y + s, x : x + s] = tile_out[m : m + s, m : m + s]
    return result[:h, :w]


def self_ensemble(model, image, plan_of, batch_size=8):
    """Mean of the model's outputs over the 8 flips and quarter turns of the image, each turned
    back: the augmentation seen in training, used again at inference; it costs 8 passes."""
    acc = np.zeros(image.shape, np.float32)
    for k in range(DIHEDRAL):
        turned = np.ascontiguousarray(dihedral(image, k))
        acc += undo_dihedral(reconstruct(model, turned, plan_of(turned), batch_size), k)
    return np.divide(acc, np.float32(DIHEDRAL), out=acc)


def whole(model, image, plan):
    """The model run once on the whole padded canvas, cropped: what tiling must reproduce."""
    canvas = pad(image, plan).astype(np.float32)[None] / np.float32(255)
    out = np.asarray(model.predict_on_batch(canvas))[0]
    m = plan.margin
    return out[m : m + plan.height, m : m + plan.width]


def boundaries(length, stride, count):
    """Image coordinates where one tile's output meets the next one's."""
    return [k * stride for k in range(1, count) if k * stride < length]


def seam_ratio(clean, rebuilt, plan):
    """Mean error on the pixels either side of a tile boundary over the mean error elsewhere.

    1.0 means the tiling left no trace; the blog post's seams show as values well above 1.
    Returns None for an image that fits in one tile.
    """
    h, w = clean.shape[:2]
    step = plan.tile if plan.mode == "naive" else plan.stride
    near = np.zeros((h, w), bool)
    for y in boundaries(h, step, plan.rows):
        near[y - 1 : y + 1] = True
    for x in boundaries(w, step, plan.cols):
        near[:, x - 1 : x + 1] = True
    if not near.any() or near.all():
        return None
    err = np.abs(clean.astype(np.float32) - rebuilt.astype(np.float32)).mean(axis=2)
    away = err[~near].mean()
    return round(float(err[near].mean() / max(away, 1e-9)), 4)


def load(model_path, summary_path):
    summary = json.loads(Path(summary_path).read_text())
    return models.load_trained(model_path, summary), summary


def plan_for(image, summary, tile, margin, mode):
    multiple = summary["size_multiple"]
    if margin is None:
        margin = default_margin(summary["receptive_radius"], multiple)
    return make_plan(image.shape[0], image.shape[1], tile, margin, multiple, mode)


def tiled(model, image, summary, tile, margin, mode, batch_size, ensemble=False):
    """The model's float32 output for a uint8 image, tile by tile (averaged over the 8 flips and
    turns when ensemble is set); returns (output, plan)."""
    plan_of = functools.partial(plan_for, summary=summary, tile=tile, margin=margin, mode=mode)
    plan = plan_of(image)
    if ensemble:
        return self_ensemble(model, image, plan_of, batch_size), plan
    return reconstruct(model, image, plan, batch_size), plan


def model_input(clean, image_id, task):
    """What the model is given for an image: the image itself, or the task's damaged copy (a
    noisy one in denoise mode) fixed by the task's seed and the image's id."""
    return tasks.get(task).fixed(clean, task or {}, image_id)[0]


def run(
    model_path,
    summary_path,
    image_path,
    image_id,
    out_png,
    out_json,
    tile,
    margin,
    mode,
    batch_size,
    task=None,
    max_megapixels=None,
    ensemble=False,
    target_path=None,
):
    """Rebuild one image and measure it against the truth: the image itself, or with a target
    (task paired) the image's clean partner, the image being what the model is given."""
    model, summary = load(model_path, summary_path)
    clean, _ = load_image(image_path, max_megapixels=max_megapixels)
    given, extra = tasks.get(task).fixed(clean, task or {}, image_id)
    if target_path is not None:  # a pair: the image is the damaged input, its target the truth
        given, clean = clean, load_image(target_path, max_megapixels=max_megapixels)[0]
    started = time.perf_counter()
    output, plan = tiled(model, given, summary, tile, margin, mode, batch_size, ensemble)
    rebuilt = to_uint8(output)
    seconds = time.perf_counter() - started
    save_png(rebuilt, out_png)
    record = {
        "image": image_id,
        "width": clean.shape[1],
        "height": clean.shape[0],
        **metrics(clean, rebuilt),
        "contrast_ratio": round(float(rebuilt.std() / max(clean.std(), 1e-6)), 4),
        "seam_ratio": seam_ratio(clean, rebuilt, plan),
        "mode": mode,
        "ensemble": bool(ensemble),
        "tile": tile,
        "margin": plan.margin,
        "tiles": plan.count,
        "seconds": round(seconds, 3),
        "megapixels_per_s": round(clean.shape[0] * clean.shape[1] / 1e6 / seconds, 3),
    }
    if given is not clean:
        record.update({f"{k}_input": v for k, v in metrics(clean, given).items()})
    holes = tasks.holes_of(extra)
    if holes is not None:  # what matters for inpainting: the pixels that were missing
        record["psnr_holes"] = tasks.psnr_inside(clean, rebuilt, holes)
        record["psnr_holes_input"] = tasks.psnr_inside(clean, given, holes)
    write_json(out_json, record, ensure_ascii=False)
    return record
