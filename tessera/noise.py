"""The noise of the denoising task: drawn fresh for training, fixed by a seed everywhere else."""

import hashlib

import numpy as np

KINDS = ("gaussian", "salt_pepper")


def add(clean, task, rng):
    """A noisy copy of uint8 images (any leading shape, channels last), as uint8.

    Gaussian noise has task["sigma"] in 0..255 units; salt and pepper turns a task["rate"] share of
    the pixels (all channels together) black or white. Results are rounded and clipped to 8 bits,
    as a noisy photo on disk would be.
    """
    if task["noise"] == "gaussian":
        noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(task["sigma"])
        return np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)
    if task["noise"] == "salt_pepper":
        noisy = clean.copy()
        hit = rng.random(clean.shape[:-1]) < task["rate"]
        salt = rng.random(clean.shape[:-1]) < 0.5
        noisy[hit & salt] = 255
        noisy[hit & ~salt] = 0
        return noisy
    raise ValueError(f"unknown noise '{task['noise']}'")


def level(task):
    """The noise's standard deviation on the [0, 1] scale (for salt and pepper, roughly: its pixels
    land about half the range away from the truth)."""
    if task["noise"] == "gaussian":
        return task["sigma"] / 255
    return 0.5 * task["rate"] ** 0.5


def rng_for(name, task):
    """A generator fixed by the task's seed and a name (an image id), so every stage that needs the
    noisy version of an image draws the very same noise."""
    digest = hashlib.sha256(f"{task.get('seed', 0)}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def fixed(clean, task, name):
    return add(clean, task, rng_for(name, task))
