"""Measures every stage uses alike: 8-bit conversion, PSNR / SSIM / MSE, and the check for an
output gone flat (the blog post's "flat gray")."""

import numpy as np

# An output with less than this share of the target's contrast has collapsed to a flat colour.
COLLAPSE_RATIO = 0.2


def collapsed(ratio, where):
    """The warning for a contrast ratio under COLLAPSE_RATIO (None when it is not)."""
    if ratio >= COLLAPSE_RATIO:
        return None
    return (
        f"collapsed: the outputs have {ratio:.0%} of the targets' contrast on {where} (the 'flat "
        "gray' failure); train longer or lower train.learning_rate"
    )


def to_uint8(result, scale=255):
    """Floats in [0, 1] (or [0, 255] with scale 1) to 8 bits, rounded and clipped. Works in place
    on result, which it consumes: a large image then needs no float temporaries beside it."""
    if not np.issubdtype(result.dtype, np.floating):
        result = result.astype(np.float32)  # a filter may hand back integers
    if scale != 1:
        np.multiply(result, scale, out=result)
    np.rint(result, out=result)
    np.clip(result, 0, 255, out=result)
    return result.astype(np.uint8)


def _squared_error(a, b):
    """The sum of squared differences of two 8-bit arrays, in float64 (exact for any photo)."""
    d = a.astype(np.float64) - b
    return float(np.vdot(d, d))


STRIP = 256  # rows per metrics strip: the memory of the metrics does not grow with the image


def metrics(original, rebuilt, strip=STRIP):
    """PSNR and SSIM on the 8-bit images (as saved), MSE on the [0, 1] scale of the training loss.

    Computed strip by strip (scikit-image's SSIM on each strip with the window's overlap, its map
    averaged over the same pixels as on the whole image), so a 12-megapixel photo does not need
    gigabytes of float64 copies.
    """
    # SSIM alone: skimage.metrics' mean_squared_error loads scipy.stats, most of a second of
    # every reconstruction job, for a mean of squares
    from skimage.metrics import structural_similarity

    h, w = original.shape[:2]
    strips = [(original[y : y + strip], rebuilt[y : y + strip]) for y in range(0, h, strip)]
    mse255 = sum(_squared_error(a, b) for a, b in strips) / original.size
    side = min(h, w)
    win = min(7, side if side % 2 else side - 1)
    ssim = float("nan")
    if win >= 3:
        pad = (win - 1) // 2
        total, count = 0.0, 0
        for y0 in range(pad, h - pad, strip):
            y1 = min(y0 + strip, h - pad)
            _, ssim_map = structural_similarity(
                original[y0 - pad : y1 + pad],
                rebuilt[y0 - pad : y1 + pad],
                channel_axis=2,
                data_range=255,
                win_size=win,
                full=True,
            )
            inner = ssim_map[pad : pad + y1 - y0, pad : w - pad]
            total += float(inner.sum(dtype=np.float64))
            count += inner.size
        ssim = total / count
    return {
        "psnr": float(10 * np.log10(255**2 / mse255)) if mse255 else float("inf"),
        "ssim": ssim,
        "mse": mse255 / 255**2,
    }
