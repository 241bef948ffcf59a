"""Task `upscale`: super-resolution. The network is given an image `factor` times smaller (2, 3 or
4) and returns it at full size; the presets that take a factor (dncnn) work on the small image
and add their correction, put in place by a pixel shuffle, to a bicubic enlargement of it, so an
untrained network is bicubic (tessera.models.presets).

The small image is made by Pillow's bicubic downscale (antialiased, as MATLAB's imresize and
most super-resolution benchmarks make theirs), the same call for the training patches (on the
host), the validation patches and the whole images rebuilt; an image whose sides are not
multiples of the factor is cropped to them first. Baselines: nearest, bicubic (the input row:
what the untrained network gives) and Lanczos enlargement, all Pillow's.
"""

import numpy as np

from tessera.tasks.registry import Task, register

RESAMPLING = {"nearest": 0, "bicubic": 3, "lanczos": 1}  # Pillow's Image.Resampling values


def cropped(img, factor):
    """The image cut to whole multiples of factor (bottom and right rows go)."""
    h, w = img.shape[:2]
    return img[: h - h % factor, : w - w % factor]


def shrink(img, factor):
    """A uint8 (H, W, 3) image, cut to multiples of factor, made factor times smaller by
    Pillow's bicubic downscale."""
    from PIL import Image

    img = np.ascontiguousarray(cropped(img, factor))
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // factor, h // factor), Image.Resampling.BICUBIC)
    return np.asarray(small)


def enlarge(small, factor, method="bicubic"):
    """A uint8 image made factor times larger by one of Pillow's resamplings."""
    from PIL import Image

    h, w = small.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(small))
    return np.asarray(image.resize((w * factor, h * factor), RESAMPLING[method]))


def _method(name):
    def run(small, factor, _extra):
        return enlarge(small, factor, name)

    return run


@register("upscale")
class Upscale(Task):
    channels = 6  # clean and the small input (each pixel repeated factor x factor times)
    input_caption = "small input"
    input_word = "bicubic"  # the input's own row is its bicubic enlargement
    output_word = "enlarged"

    def describe(self, spec):
        return f"x{spec['factor']} from a bicubic downscale"

    def model_options(self, spec):
        return {"factor": spec["factor"]}

    def scale(self, spec):
        return spec["factor"]

    def on_host(self, patches, spec, rng):
        f = spec["factor"]
        small = np.stack([shrink(p, f) for p in patches])
        return np.concatenate([patches, small.repeat(f, axis=1).repeat(f, axis=2)], axis=-1)

    def fixed(self, clean, spec, name):
        f = spec["factor"]
        if clean.ndim == 3:
            return shrink(clean, f), None
        return np.stack([shrink(p, f) for p in clean]), None

    def validation(self, patches, spec):
        return self.fixed(patches, spec, "validation")[0], patches

    def truth(self, clean, spec):
        return cropped(clean, spec["factor"])

    def as_output(self, given, spec):
        if given.ndim == 3:
            return enlarge(given, spec["factor"])
        return np.stack([enlarge(g, spec["factor"]) for g in given])

    def pictures(self, given, spec):
        return [("bicubic", self.as_output(given, spec))]

    def baselines(self, spec):
        # the factor is the parameter "chosen": one value, the task's own
        return {name: (_method(name), (spec["factor"],)) for name in ("nearest", "lanczos")}
