"""Task `denoise`: Gaussian or salt-and-pepper noise of one level added to the input only, in the
training step from the trainer's bank of normal values; non-local means and two filters as
baselines."""

from statistics import NormalDist

import numpy as np

from tessera import noise
from tessera.tasks.registry import Task, register


def gaussian_blur(img, sigma, _extra):
    from skimage.filters import gaussian

    return gaussian(img, sigma=sigma, channel_axis=2, preserve_range=True)


def median_filter(img, size, _extra):
    from skimage.filters import median

    footprint = np.ones((size, size), bool)
    return np.stack([median(img[..., c], footprint) for c in range(img.shape[2])], axis=2)


def nl_means(img, h, sigma):
    """Non-local means with filtering strength h times the noise level sigma (0..1 scale)."""
    from skimage.restoration import denoise_nl_means

    f = img.astype(np.float64) / 255
    out = denoise_nl_means(
        f, h=h * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=2
    )
    return out * 255


# name -> (function(noisy, parameter, noise level), the parameter values tried on training images);
# the non-local means parameter is its filtering strength h as a multiple of the noise level.
DENOISERS = {
    "gaussian blur": (gaussian_blur, (0.5, 0.75, 1.0, 1.5, 2.0)),
    "median filter": (median_filter, (3, 5, 7)),
    "non-local means": (nl_means, (0.4, 0.5, 0.6, 0.8, 1.0)),
}


@register("denoise")
class Denoise(Task):
    uses_noise_bank = True
    input_caption = "noisy input"
    input_word = "noisy"
    output_word = "denoised"

    def describe(self, spec):
        level = f"sigma {spec['sigma']}" if spec["noise"] == "gaussian" else f"rate {spec['rate']}"
        return f"{spec['noise']} noise, {level}"

    def on_device(self, trainer, clean, offsets, spec):
        """Noise on 0..255 values, rounded and clipped to 8 bits as tessera.noise.add does."""
        from keras import ops  # here: the other stages use tasks without starting Keras

        shape = ops.shape(clean)
        window = ops.expand_dims(offsets, 1) + ops.arange(trainer.window)
        z = ops.reshape(ops.take(trainer.bank, window, axis=0), shape)
        if spec["noise"] == "gaussian":
            return ops.clip(ops.round(clean + z * spec["sigma"]), 0, 255)
        # salt and pepper: a pixel (all channels) is hit when |z| passes the level that a share
        # `rate` of normal values exceeds, and turns white or black by z's sign
        level = NormalDist().inv_cdf(1 - spec["rate"] / 2)
        z = z[..., :1]
        hit = ops.abs(z) > level
        return ops.where(hit, ops.where(z > 0, 255.0, 0.0), clean)

    def fixed(self, clean, spec, name):
        return noise.fixed(clean, spec, name), noise.level(spec)

    def baselines(self, spec):
        return DENOISERS
