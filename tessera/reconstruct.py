"""Stage 4: rebuild a whole image with a trained model, tile by tile, and measure the result."""

import functools
import json
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tessera import TesseraError, models, tasks
from tessera.files import write_json
from tessera.measure import metrics, to_uint8
from tessera.images import DIHEDRAL, dihedral, load_image, load_mask, save_png, undo_dihedral

MODES = ("crop", "blend", "naive")


@dataclass(frozen=True)
class Plan:
    """Where the tiles of one image go. Coordinates are in the padded canvas, in input pixels;
    the out_ properties are in output pixels.

    A model of output border b and scale s (models.Geometry) turns a tile of side T into
    (T - 2b) * s outputs; each tile keeps those that stand for its centre, the stride wide,
    margin - b outputs of input in from the edge of its output (none, with the margin b of a
    valid model: nothing is computed twice)."""

    height: int
    width: int
    tile: int
    margin: int
    stride: int
    rows: int
    cols: int
    mode: str
    border: int = 0
    scale: Fraction = Fraction(1)

    @property
    def canvas(self):
        return self.rows * self.stride + 2 * self.margin, self.cols * self.stride + 2 * self.margin

    @property
    def count(self):
        return self.rows * self.cols

    @property
    def out_tile(self):
        return int((self.tile - 2 * self.border) * self.scale)

    @property
    def out_stride(self):
        return int(self.stride * self.scale)

    @property
    def out_start(self):
        """Where a tile's kept outputs start in its output, and the image's in the canvas's."""
        return int((self.margin - self.border) * self.scale)

    @property
    def out_canvas(self):
        return tuple(int((side - 2 * self.border) * self.scale) for side in self.canvas)

    @property
    def output_shape(self):
        """(height, width) of the rebuilt image: the image's at the model's scale, rounded up."""
        return math.ceil(self.height * self.scale), math.ceil(self.width * self.scale)


def default_margin(radius, multiple, border=0, scale=1):
    """The smallest margin that covers the receptive radius and the output border, keeps the
    stride a multiple of the size multiple and starts each tile's kept outputs on a whole
    output pixel."""
    half, scale = max(1, multiple // 2), Fraction(scale)
    margin = -(-max(radius, border) // half) * half
    for _ in range(scale.denominator):  # the remainders repeat after that many steps
        if ((margin - border) * scale).denominator == 1:
            return margin
        margin += half
    raise TesseraError(
        f"reconstruct.margin: no margin fits a model of size multiple {multiple}, output border "
        f"{border} and output scale {scale}: its tiles cannot start on whole output pixels"
    )


def make_plan(height, width, tile, margin, multiple, mode="crop", border=0, scale=1):
    """Tiles of tile x tile pixels whose centres, tile - 2 * margin wide, cover the image.

    The image is reflect-padded by the margin on every side (and a little more at the bottom and
    right so that edge tiles are whole). In "naive" mode the margin is the model's border (0 for
    a same-size model): the blog post's first attempt, whose tile edges show as seams unless the
    model's valid convolutions see only real pixels.
    """
    if mode not in MODES:
        raise TesseraError(
            f"reconstruct.mode: unknown mode '{mode}'; choose one of: {', '.join(MODES)}"
        )
    scale = Fraction(scale)
    if mode == "naive":
        margin = border
    if margin < border:
        raise TesseraError(
            f"reconstruct.margin: {margin} is less than the model's output border {border} (a "
            f"tile of {tile} gives only its centre {tile - 2 * border} wide); use at least {border}"
        )
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
    if ((margin - border) * scale).denominator != 1 or (stride * scale).denominator != 1:
        raise TesseraError(
            f"reconstruct.margin: margin {margin} - border {border} and the stride {stride} must "
            f"be multiples of {scale.denominator} for a model whose output is {scale} of its "
            f"input's size"
        )
    rows, cols = -(-height // stride), -(-width // stride)
    return Plan(height, width, tile, margin, stride, rows, cols, mode, border, scale)


def pad(image, plan):
    """The image reflect-padded to the plan's canvas (same dtype)."""
    ch, cw = plan.canvas
    m = plan.margin
    widths = ((m, ch - m - plan.height), (m, cw - m - plan.width), (0, 0))
    return np.pad(image, widths, mode="reflect")


def window(tile):
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
    """Run the model over a uint8 image tile by tile; returns float32 (plan.output_shape, C) in
    the model's range. Everything below is in output pixels."""
    canvas = pad(image, plan)
    (h, w), c = plan.output_shape, image.shape[2]
    m, s, t = plan.out_start, plan.out_stride, plan.out_tile
    if plan.mode == "blend":
        acc = np.zeros(plan.out_canvas + (c,), np.float32)
        weight = np.zeros(plan.out_canvas + (1,), np.float32)
        win = window(t)
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
    acc = None
    for k in range(DIHEDRAL):
        turned = np.ascontiguousarray(dihedral(image, k))
        out = undo_dihedral(reconstruct(model, turned, plan_of(turned), batch_size), k)
        acc = out.copy() if acc is None else np.add(acc, out, out=acc)
    return np.divide(acc, np.float32(DIHEDRAL), out=acc)


def boundaries(length, stride, count):
    """Image coordinates where one tile's output meets the next one's."""
    return [k * stride for k in range(1, count) if k * stride < length]


def seam_ratio(clean, rebuilt, plan):
    """Mean error on the pixels either side of a tile boundary over the mean error elsewhere.

    1.0 means the tiling left no trace; the blog post's seams show as values well above 1.
    Returns None for an image that fits in one tile, or a rebuilt image of another size.
    """
    if clean.shape != rebuilt.shape:
        return None
    h, w = clean.shape[:2]
    step = plan.stride  # the tile itself in naive mode, whose margin is 0 there
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


def load(model_path, summary_path, model_file=None):
    """The trained model and its summary; model_file: the Python file that may build its network
    (models.load_trained)."""
    summary = json.loads(Path(summary_path).read_text())
    return models.load_trained(model_path, summary, model_file), summary


def plan_for(image, summary, tile, margin, mode):
    multiple = summary["size_multiple"]
    # summaries written before models reported their geometry are of same-size models
    border = summary.get("output_border", 0)
    scale = Fraction(str(summary.get("output_scale", 1)))
    if margin is None:
        margin = default_margin(summary["receptive_radius"], multiple, border, scale)
        if tile <= 2 * margin and mode != "naive":
            # a model that sees far (a fill of holes reaches 136 pixels) would leave the default
            # tile no centre: widen it, as the result is the same, to keep a centre as wide as
            # both margins (64 pixels at least): the tiles then compute each pixel of the image
            # about 4 times, where a centre of 64 would compute it 9 to 30 times. No wider than
            # the image, which one centre then holds.
            centre = max(64, min(2 * margin, max(image.shape[:2])))
            tile = 2 * margin + -(-centre // multiple) * multiple
    return make_plan(image.shape[0], image.shape[1], tile, margin, multiple, mode, border, scale)


def tiled(model, image, summary, tile, margin, mode, batch_size, ensemble=False):
    """The model's float32 output for a uint8 image, tile by tile (averaged over the 8 flips and
    turns when ensemble is set); returns (output, plan)."""
    plan_of = functools.partial(plan_for, summary=summary, tile=tile, margin=margin, mode=mode)
    plan = plan_of(image)
    if ensemble:
        return self_ensemble(model, image, plan_of, batch_size), plan
    return reconstruct(model, image, plan, batch_size), plan


def model_input(clean, image_id, task):
    return tasks.model_input(clean, image_id, task)


# What rebuild can measure of a rebuilt image against the image it was made from.
MEASURES = ("metrics", "contrast_ratio", "seam_ratio")


def rebuild(
    model,
    summary,
    image_path,
    image_id,
    out_png,
    out_json=None,
    tile=128,
    margin=None,
    mode="crop",
    batch_size=8,
    task=None,
    max_megapixels=None,
    ensemble=False,
    measures=MEASURES,
    source=None,
    target_path=None,
    mask_path=None,
):
    """Rebuild one image file with a loaded model: decode it, give the model its input (made from
    the image as task says; the image itself without one), tile, convert to 8 bits, save the PNG
    and return the record (written to out_json when given), measured against the image as the
    truth for each of `measures`. The one path of reconstruction and apply; source, when given,
    is recorded as where the image came from; mask_path, a mask image whose white pixels are the
    holes of a model told of holes (apply). Raises images.UnusableImage for a file that cannot be
    decoded."""
    kind = tasks.get(task)
    clean, _ = load_image(image_path, max_megapixels=max_megapixels)
    given, extra = kind.fixed(clean, task or {}, image_id)
    if target_path is not None:  # a pair: the image is the damaged input, its target the truth
        given, clean = clean, load_image(target_path, max_megapixels=max_megapixels)[0]
    clean = kind.truth(clean, task or {})
    if mask_path is not None:
        from tessera.tasks.restore import mark_holes

        given = mark_holes(given, load_mask(mask_path, given.shape[:2], image_path))
    started = time.perf_counter()
    output, plan = tiled(model, given, summary, tile, margin, mode, batch_size, ensemble)
    rebuilt = to_uint8(output)
    seconds = max(time.perf_counter() - started, 1e-9)
    save_png(rebuilt, out_png)
    height, width = clean.shape[:2]
    record = {"image": image_id}
    if source is not None:
        record["source"] = str(source)
    if mask_path is not None:
        record["mask"] = str(mask_path)
    record.update(width=width, height=height)
    same_size = rebuilt.shape == clean.shape
    if not same_size:
        record.update(output_width=rebuilt.shape[1], output_height=rebuilt.shape[0])
    if "metrics" in measures:
        if same_size:
            record.update(metrics(clean, rebuilt))
        else:  # a model that enlarges, run on an image with no larger truth (apply)
            record.update(psnr=None, ssim=None, mse=None)
            record["note"] = (
                f"not measured: the output is {rebuilt.shape[1]}x{rebuilt.shape[0]}, the image "
                f"{width}x{height} (model output scale {plan.scale})"
            )
    if "contrast_ratio" in measures:
        record["contrast_ratio"] = round(float(rebuilt.std() / max(clean.std(), 1e-6)), 4)
    if "seam_ratio" in measures:
        record["seam_ratio"] = seam_ratio(clean, rebuilt, plan)
    record.update(
        mode=mode,
        ensemble=bool(ensemble),
        tile=tile,
        margin=plan.margin,
        tiles=plan.count,
        seconds=round(seconds, 3),
        megapixels_per_s=round(width * height / 1e6 / seconds, 3),
    )
    if given is not clean and "metrics" in measures:
        shown = kind.as_output(given, task or {})
        if shown.shape == clean.shape:
            record.update({f"{k}_input": v for k, v in metrics(clean, shown).items()})
    holes = tasks.holes_of(extra)
    if holes is not None and same_size and "metrics" in measures:  # inpainting: the missing pixels
        record["psnr_holes"] = tasks.psnr_inside(clean, rebuilt, holes)
        record["psnr_holes_input"] = tasks.psnr_inside(clean, given, holes)
    if out_json is not None:
        write_json(out_json, record, ensure_ascii=False)
    return record


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
    model_file=None,
):
    """Rebuild one image and measure it against the truth: the image itself, or with a target
    (task paired) the image's clean partner, the image being what the model is given.
    model_file: the run's own model.file, the only code that may build the network."""
    model, summary = load(model_path, summary_path, model_file)
    return rebuild(
        model,
        summary,
        image_path,
        image_id,
        out_png,
        out_json,
        tile,
        margin,
        mode,
        batch_size,
        task,
        max_megapixels,
        ensemble,
        target_path=target_path,
    )
