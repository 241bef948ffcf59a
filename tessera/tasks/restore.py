"""Task `restore`: undo a chain of degradations (task.degradations), applied in order, each with
its own range, on the host.

Each degradation is a small function of (uint8 image, its settings, a numpy Generator, fixed), in
the style of BasicSR's degradations.py, returning the damaged uint8 image and the mask of the
pixels it blanked (or None). In training every value (a JPEG quality, a blur sigma, where a hole
goes) is drawn per patch from the generator Batches keys by (seed, epoch, batch), never the global
random state, so a resumed run draws the same damage. A fixed draw (validation, reconstruction,
the baselines) takes the middle of each range, so the figures are at one known level (JPEG
quality 20 for qualities 10 to 30), and draws the holes' places from task.seed and the image name.

All of it runs on the host, where the real JPEG codec (Pillow) is; each result is rounded to 8
bits, as a damaged file on disk would be.
"""

import numpy as np

from tessera.tasks.denoise import gaussian_blur, nl_means
from tessera.tasks.reconstruct import jpeg as jpeg_codec
from tessera.tasks.registry import Task, register, rng_for

# Holes are mid-gray. With `mask: true` (the default) the network is told where they are: its
# first layers mark every pixel of exactly this colour as a hole (a channel of its own,
# tessera.models), so a user's own damaged image says where its holes are by being painted this
# colour there.
HOLE_FILL = 128
HOLE_AREA = 64 * 64  # task holes' count is per this many pixels, so it scales with the image


def mark_holes(image, hole, fill=HOLE_FILL):
    """The image with the holes of a mask (bool, True where missing) painted the holes' gray, as a
    network told of holes finds them. A known pixel that happens to be exactly that gray (a photo
    has hundreds) is nudged by one level in blue, so that only the mask's holes read as holes."""
    out = np.array(image, np.uint8, copy=True)
    gray = np.all(out == fill, axis=-1) & ~hole
    out[gray, 2] = fill + 1
    out[hole] = fill
    return out


def told_of_holes(task):
    """Whether a model trained for this task finds holes by their gray (holes with mask: true)."""
    chain = (task or {}).get("degradations") or []
    return any(d.get("kind") == "holes" and d.get("mask", True) for d in chain)


def _real(bounds, rng, fixed):
    lo, hi = bounds
    return (lo + hi) / 2 if fixed else lo + (hi - lo) * float(rng.random())


def _whole(bounds, rng, fixed):
    lo, hi = bounds
    return (lo + hi) // 2 if fixed else int(rng.integers(lo, hi + 1))


def _to_uint8(values):
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def jpeg(img, d, rng, fixed):
    """Saved as JPEG (the real codec, 4:2:0 chroma as Pillow saves by default) at a quality drawn
    from d["quality"], and decoded."""
    return jpeg_codec(np.ascontiguousarray(img), _whole(d["quality"], rng, fixed))[0], None


def blur(img, d, rng, fixed):
    """Gaussian blur of a sigma drawn from d["sigma"] (pixels), edges reflected."""
    from scipy.ndimage import gaussian_filter

    sigma = _real(d["sigma"], rng, fixed)
    return (
        _to_uint8(gaussian_filter(img.astype(np.float32), (sigma, sigma, 0), mode="reflect")),
        None,
    )


def downscale(img, d, rng, fixed):
    """Bicubic down by a whole factor drawn from d["factor"] (2 to 4), then bicubic back up to the
    same size: the model is given the upsampled image, as a same-size network needs."""
    from PIL import Image

    factor = _whole(d["factor"], rng, fixed)
    h, w = img.shape[:2]
    small = Image.fromarray(np.ascontiguousarray(img)).resize(
        (max(1, round(w / factor)), max(1, round(h / factor))), Image.BICUBIC
    )
    return np.asarray(small.resize((w, h), Image.BICUBIC)), None


def noise(img, d, rng, fixed):
    """Gaussian noise of a sigma drawn from d["sigma"] (0..255 units): one model for every level."""
    sigma = np.float32(_real(d["sigma"], rng, fixed))
    return _to_uint8(img + rng.standard_normal(img.shape, dtype=np.float32) * sigma), None


def holes(img, d, rng, fixed):
    """Rectangles and strokes of a side (or width) drawn from d["size"] pixels, d["count"] of them
    per 64 x 64 pixels, filled with mid-gray (HOLE_FILL). Returns the mask of the holes too."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    expected = _real(d["count"], rng, fixed) * h * w / HOLE_AREA
    n = int(expected) + int(rng.random() < expected - int(expected))
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    lo, hi = d["size"]
    for _ in range(n):
        side = lo + (hi - lo) * rng.random(2)
        y, x = rng.random(2) * (h, w)
        if rng.random() < 0.5:
            draw.rectangle(
                [x - side[1] / 2, y - side[0] / 2, x + side[1] / 2, y + side[0] / 2], 255
            )
        else:  # a stroke: a line of the drawn width, two to four times as long, at any angle
            angle, length = rng.random() * np.pi, side[1] * (2 + 2 * rng.random())
            dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
            draw.line([x - dx, y - dy, x + dx, y + dy], 255, width=max(1, round(side[0])))
    mask = np.asarray(canvas) > 0
    out = img.copy()
    out[mask] = HOLE_FILL
    return out, mask


# kind -> function(image, settings, rng, fixed) -> (damaged image, mask of holes or None)
DEGRADATIONS = {"jpeg": jpeg, "blur": blur, "downscale": downscale, "noise": noise, "holes": holes}


def degrade(img, degradations, rng, fixed=False):
    """One uint8 image (H, W, 3) through the chain in order; returns (damaged, extra): what a
    classical method may know, the holes' mask (or None) and the noise and blur levels."""
    mask = None
    for d in degradations:
        img, made = DEGRADATIONS[d["kind"]](img, d, rng, fixed)
        if made is not None:
            mask = made if mask is None else mask | made
    extra = {"holes": mask}
    for d in degradations:
        if d["kind"] in ("noise", "blur"):
            extra[d["kind"]] = sum(d["sigma"]) / 2
    return img, extra


def inpaint_biharmonic(img, _value, extra):
    from skimage.restoration import inpaint_biharmonic

    mask = extra["holes"]
    if mask is None or not mask.any():
        return img
    return inpaint_biharmonic(img.astype(np.float64) / 255, mask, channel_axis=-1) * 255


def tv_smoothing(img, weight, _extra):
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(img.astype(np.float64) / 255, weight=weight, channel_axis=-1) * 255


def unsharp_mask(img, amount, extra):
    from skimage.filters import unsharp_mask

    f = img.astype(np.float64) / 255
    return unsharp_mask(f, radius=extra["blur"], amount=amount, channel_axis=-1) * 255


def _nl_means(img, h, extra):
    return nl_means(img, h, extra["noise"] / 255)


# degradation kind -> {baseline name: (function(damaged, parameter, extra), parameters tried)};
# a downscaled input is already its bicubic upscaling, so the input's own row is that baseline.
BASELINES = {
    "jpeg": {
        "gaussian blur": (gaussian_blur, (0.5, 0.75, 1.0)),
        "total variation": (tv_smoothing, (0.02, 0.04, 0.08)),
    },
    "blur": {"unsharp mask": (unsharp_mask, (0.5, 1.0, 2.0))},
    "noise": {"non-local means": (_nl_means, (0.5, 0.6, 0.8, 1.0))},
    "holes": {"biharmonic inpainting": (inpaint_biharmonic, (None,))},
}


@register("restore")
class Restore(Task):
    channels = 6  # the host makes the input: clean and damaged go to the device side by side
    input_caption = "damaged input"
    input_word = "damaged"
    output_word = "restored"

    def describe(self, spec):
        def one(d):
            ranges = ", ".join(
                f"{k} {v[0]}-{v[1]}" for k, v in d.items() if isinstance(v, (list, tuple))
            )
            return f"{d['kind']} {ranges}".strip()

        return ", then ".join(one(d) for d in spec["degradations"])

    def on_host(self, patches, spec, rng):
        damaged = np.stack([degrade(p, spec["degradations"], rng)[0] for p in patches])
        return np.concatenate([patches, damaged], axis=-1)

    def fixed(self, clean, spec, name):
        rng = rng_for(name, spec)
        if clean.ndim == 3:
            return degrade(clean, spec["degradations"], rng, fixed=True)
        # a batch of patches (validation): one draw after the other from the same generator
        done = [degrade(p, spec["degradations"], rng, fixed=True) for p in clean]
        return np.stack([g for g, _ in done]), [e for _, e in done]

    def check(self, spec, patch_size, multiple):
        from tessera import TesseraError

        chain = spec["degradations"]
        for i, d in enumerate(chain):
            later = [e["kind"] for e in chain[i + 1 :] if e["kind"] != "holes"]
            if d["kind"] == "holes" and d.get("mask", True) and later:
                raise TesseraError(
                    f"task.degradations[{i}]: holes the network is told of (mask: true) must come "
                    f"after every other damage: {', '.join(later)} after them would change their "
                    "gray, and the network could not find them; move the holes last, or set "
                    "mask: false"
                )

    def model_options(self, spec):
        chain = spec["degradations"]
        if not told_of_holes(spec):
            return {}
        # with other damage the network restores every pixel; holes alone, only the holes
        if any(d["kind"] != "holes" for d in chain):
            return {"mask": HOLE_FILL, "holes_only": False}
        return {"mask": HOLE_FILL}

    def loss_weights(self, given, spec):
        """Told the holes and given nothing else to mend, the network changes them alone: the
        loss is their mean, not the mean over every pixel, of which they are a few percent
        (averaged over all, the error the network can act on is lost in the rest, and Adam's
        steps with it)."""
        if self.model_options(spec) != {"mask": HOLE_FILL}:
            return None
        from keras import ops

        near = ops.abs(ops.cast(given, "float32") - HOLE_FILL) < 0.5
        return ops.cast(ops.all(near, axis=-1, keepdims=True), "float32")

    def baselines(self, spec):
        table = {}
        for d in spec["degradations"]:
            table.update(BASELINES.get(d["kind"], {}))
        return table
