"""The training data pipeline: uint8 patches in, shuffled and augmented (input, target) batches out.

Everything random is drawn from (seed, epoch, batch), so every epoch sees new noise and a resumed
run continues where the interrupted one would have gone.
"""

import keras
import numpy as np

from tessera import noise
from tessera.images import DIHEDRAL, dihedral


def augment(batch, rng):
    """Apply one random flip / quarter-turn per patch to a (N, H, W, C) batch.

    Callers build the target from the augmented batch (or pass input and target stacked on the
    channel axis), so input and target always get the same transform: the blog post's bug was to
    transform them independently.
    """
    kinds = rng.integers(0, DIHEDRAL, len(batch))
    out = np.empty_like(batch)
    for k in range(DIHEDRAL):
        idx = np.flatnonzero(kinds == k)
        if len(idx):
            out[idx] = dihedral(batch[idx], k, axes=(1, 2))
    return out


def make_pair(clean, task, rng):
    """(model input, target) in [0, 1] for a uint8 batch: noise goes on the input only."""
    target = clean.astype(np.float32) / np.float32(255)
    if task["kind"] != "denoise":
        return target, target
    return noise.add(clean, task, rng).astype(np.float32) / np.float32(255), target


class Batches(keras.utils.PyDataset):
    """A Keras PyDataset of (input, target) float batches from uint8 patches.

    With drop_remainder every batch is whole (data-parallel training splits each one evenly).
    """

    def __init__(
        self, patches, batch_size, seed, augment_on, task=None, first_epoch=0, drop_remainder=False
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.patches, self.batch_size, self.seed = patches, batch_size, seed
        self.augment_on, self.task = augment_on, task or {"kind": "reconstruct"}
        self.drop_remainder = drop_remainder
        self.epoch = first_epoch - 1
        self.on_epoch_end()

    def __len__(self):
        if self.drop_remainder:
            return max(1, len(self.patches) // self.batch_size)
        return -(-len(self.patches) // self.batch_size)

    def __getitem__(self, i):
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        batch = augment(self.patches[idx], rng) if self.augment_on else self.patches[idx]
        return make_pair(batch, self.task, rng)

    def on_epoch_end(self):
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.patches))
