"""Task `reconstruct`: the model is given the image itself and rebuilds it (an autoencoder)."""

import io

import numpy as np

from tessera.tasks.registry import Task, register

JPEG_QUALITIES = (75, 95)


def jpeg(clean, quality):
    """A uint8 image through the real JPEG codec (Pillow) at a quality; returns (decoded image,
    bytes per pixel of the file)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(clean).save(buf, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return decoded, len(buf.getvalue()) / (clean.shape[0] * clean.shape[1])


@register("reconstruct")
class Reconstruct(Task):
    input_is_target = True

    def evaluate(self, image_id, clean, spec, params):
        # JPEG with its size in bytes per pixel: the price a learned code must beat
        rows = []
        for q in JPEG_QUALITIES:
            decoded, bpp = jpeg(clean, q)
            rows.append((f"JPEG q{q}", q, decoded, round(bpp, 4)))
        return rows, None
