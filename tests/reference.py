"""What the tests compare tiling with: the model run once on the whole padded image."""

import numpy as np

from tessera.reconstruct import pad


def whole_image(model, image, plan):
    """The model run once on the whole padded canvas, cropped: what tiling must reproduce."""
    canvas = pad(image, plan).astype(np.float32)[None] / np.float32(255)
    out = np.asarray(model.predict_on_batch(canvas))[0]
    (h, w), m = plan.output_shape, plan.out_start
    return out[m : m + h, m : m + w]
