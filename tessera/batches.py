"""The training data path: uint8 patches read from the per-image files on the host, made into
float (input, target) pairs inside the training step, on whatever device trains.

The host only gathers uint8 patches and draws, per patch, a flip/turn code and an offset into a
bank of Gaussian noise; conversion, flips, turns and noise are Keras operations of the training
step (TensorFlow, JAX and PyTorch alike), so the host never sets a GPU's pace. Everything random is
drawn from (seed, epoch, batch): every epoch sees new noise, and a resumed run continues where the
interrupted one would have gone. No more than one batch of patches is in memory at a time, read
from the files with pread, so memory does not grow with the folder.
"""

import os
import resource
from collections import OrderedDict

import keras
import numpy as np
from keras import ops

from tessera import TesseraError, models, tasks
from tessera.images import DIHEDRAL, dihedral
from tessera.patches import grid_positions

# Gaussian noise values the device draws its training noise from (64 MB at most); each patch
# takes a window at a random offset, so no two share a noise field in practice.
NOISE_BANK = 2**22


def npy_layout(path):
    """Where an .npy file's data starts, and its shape, from its header alone (it must hold
    C-ordered uint8, as the patches stage writes)."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        if fortran or dtype != np.uint8:
            raise ValueError(f"{path}: expected a C-ordered uint8 array, found {dtype}")
        return f.tell(), shape


class NpyFiles:
    """Rows of many uint8 .npy files, read with pread: only what is asked for is read, a few
    hundred files are open at a time, and nothing is memory-mapped, so the job's memory stays
    that of the rows in use however large the folder."""

    def __init__(self, paths, open_files=None):
        self.paths = [str(p) for p in paths]
        layouts = [npy_layout(p) for p in self.paths]
        self.offsets = np.array([o for o, _ in layouts], np.int64)
        self.shapes = [s for _, s in layouts]
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.open_files = open_files or max(16, min(1024, soft // 2))
        self._fds = OrderedDict()

    def __len__(self):
        return len(self.paths)

    def _fd(self, i):
        fd = self._fds.get(i)
        if fd is not None:
            self._fds.move_to_end(i)
            return fd
        if len(self._fds) >= self.open_files:
            os.close(self._fds.popitem(last=False)[1])
        fd = self._fds[i] = os.open(self.paths[i], os.O_RDONLY)
        return fd

    def read(self, i, start, count):
        """Rows start .. start + count - 1 of file i."""
        shape = self.shapes[i][1:]
        out = np.empty((count, *shape), np.uint8)
        row = int(np.prod(shape))
        offset = int(self.offsets[i]) + start * row
        done = os.preadv(self._fd(i), [memoryview(out).cast("B")], offset)
        if done != out.nbytes:
            raise OSError(f"{self.paths[i]}: file shorter than its header says")
        return out

    def gather(self, files, rows):
        """One row of each given file (files[k], rows[k]), as one array: a pread per row, straight
        into the array, with the byte offsets worked out at once."""
        shape = self.shapes[files[0]][1:] if len(files) else (0,)
        size = int(np.prod(shape))
        out = np.empty((len(files), *shape), np.uint8)
        where = self.offsets[files] + np.asarray(rows, np.int64) * size
        buf = memoryview(out).cast("B")
        for k, (f, offset) in enumerate(zip(files.tolist(), where.tolist())):
            if os.preadv(self._fd(f), [buf[k * size : (k + 1) * size]], offset) != size:
                raise OSError(f"{self.paths[f]}: file shorter than its header says")
        return out

    def close(self):
        while self._fds:
            os.close(self._fds.popitem()[1])

    def __del__(self):
        self.close()


class InMemory:
    """The same interface over arrays already in memory (small sets, tests)."""

    def __init__(self, arrays):
        self.arrays = [np.asarray(a, np.uint8) for a in arrays]
        self.shapes = [a.shape for a in self.arrays]

    def __len__(self):
        return len(self.arrays)

    def gather(self, files, rows):
        return np.stack([self.arrays[f][r] for f, r in zip(files, rows)])

    def read(self, i, start, count):
        return self.arrays[i][start : start + count].copy()


class Patches:
    """Every patch of per-image patch arrays (N, size, size, C), numbered across images."""

    def __init__(self, reader):
        self.reader = reader
        counts = [s[0] for s in reader.shapes]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.size = next((s[1] for s in reader.shapes if s[0]), 0)

    def __len__(self):
        return int(self.starts[-1])

    def set_epoch(self, epoch):
        pass  # the same patches every epoch

    def take(self, idx):
        files = np.searchsorted(self.starts, idx, side="right") - 1
        return self.reader.gather(files, idx - self.starts[files])


class Crops:
    """size x size crops of per-image arrays (H, W, C) at positions given per image: drawn afresh
    every epoch (random sampling), or fixed."""

    def __init__(self, reader, size, counts=None, seed=0, positions=None):
        self.reader, self.size, self.seed = reader, size, seed
        self.counts, self.positions = counts, positions
        if positions is None:
            self.set_epoch(0)
        self.starts = np.concatenate([[0], np.cumsum([len(p) for p in self.positions])])
        self.starts = self.starts.astype(np.int64)

    def __len__(self):
        return int(self.starts[-1])

    def set_epoch(self, epoch):
        if self.counts is None:
            return  # fixed positions
        self.positions = []
        for i, (shape, n) in enumerate(zip(self.reader.shapes, self.counts)):
            rng = np.random.default_rng([self.seed, epoch, i])
            ys = rng.integers(0, shape[0] - self.size + 1, n)
            xs = rng.integers(0, shape[1] - self.size + 1, n)
            self.positions.append(np.stack([ys, xs], axis=1))

    def take(self, idx):
        s = self.size
        out = np.empty((len(idx), s, s, self.reader.shapes[0][-1] if idx.size else 3), np.uint8)
        files = np.searchsorted(self.starts, idx, side="right") - 1
        for k, (f, i) in enumerate(zip(files, idx)):
            y, x = self.positions[f][i - self.starts[f]]
            out[k] = self.reader.read(f, y, s)[:, x : x + s]
        return out


def evenly(counts, limit):
    """How many of each image's patches to take so that at most `limit` are taken in all, shared
    as evenly as the images allow (an image with fewer gives its unused share to the others)."""
    take = np.zeros(len(counts), np.int64)
    left, open_ = limit, [i for i, n in enumerate(counts) if n]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for i in list(open_):
            extra = min(share, counts[i] - take[i], left)
            take[i] += extra
            left -= extra
            if take[i] == counts[i]:
                open_.remove(i)
            if not left:
                break
    return take


def spread(n, k):
    """k indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)) if k else np.zeros(0, int)


def validation_patches(reader, limit, size, stride=None):
    """At most `limit` validation patches, drawn evenly over the images and over each image, as
    one uint8 array: what every epoch is validated on. The reader holds patch arrays, or whole
    images (random sampling) that are cut here on the grid of the given stride."""
    if stride is None:
        source = Patches(reader)
        counts = [s[0] for s in reader.shapes]
        take = evenly(counts, limit)
        idx = [source.starts[i] + spread(n, k) for i, (n, k) in enumerate(zip(counts, take))]
        return source.take(np.concatenate(idx))
    grids = [grid_positions(s[0], s[1], size, stride) for s in reader.shapes]
    take = evenly([len(g) for g in grids], limit)
    crops = Crops(reader, size, positions=[g[spread(len(g), k)] for g, k in zip(grids, take)])
    return crops.take(np.arange(len(crops)))


class Batches(keras.utils.PyDataset):
    """What the host hands to the training step: ((uint8 patches, flip/turn codes, noise offsets),
    placeholder) per batch, from a Patches or Crops source.

    steps, when given, makes an epoch that many batches of a fresh shuffle (a useful unit on a huge
    folder); otherwise an epoch is one pass over every patch. With drop_remainder every batch is
    whole (data-parallel training splits each one evenly).
    """

    def __init__(
        self,
        source,
        batch_size,
        seed,
        augment_on,
        first_epoch=0,
        drop_remainder=False,
        steps=None,
        task=None,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.task, self.kind = task or {}, tasks.get(task)
        self.augment_on, self.drop_remainder, self.steps = augment_on, drop_remainder, steps
        self.noise_span = NOISE_BANK - 3 * source.size**2
        self.epoch = first_epoch - 1
        self.on_epoch_end()

    def __len__(self):
        if self.steps:
            return self.steps
        n = len(self.source)
        return max(1, n // self.batch_size) if self.drop_remainder else -(-n // self.batch_size)

    @property
    def patches_per_epoch(self):
        whole = self.steps or self.drop_remainder
        return len(self) * self.batch_size if whole else len(self.source)

    def __getitem__(self, i):
        n = len(self.source)
        positions = np.arange(i * self.batch_size, (i + 1) * self.batch_size)
        positions = positions % n if self.steps else positions[positions < n]
        idx = np.sort(self.order[positions])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        codes = rng.integers(0, DIHEDRAL, len(idx)) if self.augment_on else np.zeros(len(idx))
        offsets = rng.integers(0, self.noise_span, len(idx))
        # a task that damages its input on the host draws from its own generator of (seed, epoch,
        # batch), so the codes and offsets stay those of every other task
        damage = np.random.default_rng([self.seed, self.epoch, i, 1])
        patches = self.kind.on_host(self.source.take(idx), self.task, damage)
        given = (patches, codes.astype(np.int32), offsets.astype(np.int32))
        return given, np.zeros(len(idx), np.uint8)  # the target is made on the device

    def on_epoch_end(self):
        self.epoch += 1
        self.source.set_epoch(self.epoch)
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.source))


def dihedral_maps(size):
    """For each of the 8 flips and quarter turns, where each pixel of a size x size patch comes
    from, as flat indices: tessera.images.dihedral applied to the pixel numbers."""
    grid = np.arange(size * size).reshape(size, size)
    return np.stack([dihedral(grid, k).ravel() for k in range(DIHEDRAL)]).astype(np.int32)


def dihedral_on_device(patches, codes, maps):
    """Each patch of a (N, S, S, C) tensor turned by its own code (0..7), as one gather."""
    n, s, c = ops.shape(patches)[0], ops.shape(patches)[1], ops.shape(patches)[3]
    flat = ops.reshape(patches, (n, s * s, c))
    where = ops.take(ops.convert_to_tensor(maps), codes, axis=0)
    where = ops.broadcast_to(ops.expand_dims(where, -1), (n, s * s, c))
    return ops.reshape(ops.take_along_axis(flat, where, axis=1), (n, s, s, c))


# Charbonnier's epsilon on 0..1 values (BasicSR's 1e-12 on squared errors is 1e-6 on them): a
# smooth L1 whose gradient does not vanish near zero error as the squared error's does.
CHARBONNIER_EPS = 1e-3


class PairedLoss(keras.losses.Loss):
    """The loss between the model's answer and the target that Trainer outputs side by side, and
    where a task counts it, a seventh channel of weights (1 where counted): the loss is then the
    mean over the counted pixels of each patch. (A Loss, not an override of compute_loss, so that
    Keras scales it for data-parallel training as it does its own.) The y_true Keras passes is a
    placeholder, and unused."""

    def __init__(self, kind="mse", name="paired_loss"):
        super().__init__(name=name)
        self.kind = kind

    def call(self, y_true, y_pred):
        error = y_pred[..., :3] - y_pred[..., 3:6]
        if self.kind == "mse":
            error = error * error
        elif self.kind == "charbonnier":
            error = ops.sqrt(error * error + CHARBONNIER_EPS**2)
        else:
            error = ops.abs(error)
        if y_pred.shape[-1] == 6:
            return ops.mean(error, axis=(1, 2, 3))
        weights = y_pred[..., 6:]
        counted = ops.sum(weights, axis=(1, 2, 3)) * 3
        return ops.sum(error * weights, axis=(1, 2, 3)) / ops.maximum(counted, 1.0)

    def get_config(self):
        return {"kind": self.kind, "name": self.name}


class Trainer(keras.Model):
    """The preset as it is trained: uint8 patches, flip/turn codes and noise offsets in; the model
    input and target are made here, inside the training step, by the task (tessera.tasks), or
    come from the host side by side (6 channels); the output is the model's answer and the target
    side by side, which PairedLoss compares.

    The target is the flipped/turned clean patch and the input is made from that same patch, so
    input and target always get the same transform: the blog post's bug was to transform them
    independently. A model with an output border (valid convolutions) answers for the centre of
    the patch only, so the target is that centre. A model that enlarges by f (task upscale) is
    given every f-th pixel of the input side, which the host made with each pixel repeated f x f
    times (tessera.tasks.registry).
    """

    def __init__(self, core, size, task, seed):
        super().__init__(name=f"training_{core.name}")
        self.core, self.task, self.kind = core, task, tasks.get(task)
        geo = models.geometry(core)
        factor = self.kind.scale(task or {})
        if geo.scale != factor:
            raise TesseraError(
                f"model '{core.name}': its output is {geo.scale} of its input's size; the "
                f"{task['kind']} task trains only models whose output is "
                + ("the input's size" if factor == 1 else f"{factor} times it (model.factor)")
            )
        if size % (factor * geo.multiple):
            raise TesseraError(
                f"patches.size: {size} is not a multiple of {factor * geo.multiple}: the task "
                f"shrinks patches {factor} times and model '{core.name}' takes sides that are "
                f"multiples of {geo.multiple}"
            )
        if 2 * geo.border >= size // factor:
            raise TesseraError(
                f"patches.size: {size} leaves no output for model '{core.name}', whose output "
                f"is {2 * geo.border} pixels smaller than its input; use patches larger than "
                f"{2 * geo.border * factor}"
            )
        self.size, self.factor = size, factor
        self.border = int(geo.border * factor)  # in output (target) pixels
        self.maps = dihedral_maps(size)
        self.window = 3 * size * size
        if self.kind.uses_noise_bank:
            # autocast off: under a mixed policy the noise stays float32, not bfloat16
            self.bank = self.add_weight(
                shape=(NOISE_BANK,),
                initializer="zeros",
                trainable=False,
                autocast=False,
                name="noise_bank",
            )
            bank = np.random.default_rng([seed, 7]).standard_normal(NOISE_BANK, np.float32)
            self.bank.assign(bank)

    def call(self, inputs, training=False):
        patches, codes, offsets = inputs
        # cast again: TensorFlow's MirroredStrategy builds the model from a batch averaged over
        # the replicas, which turns the integers into floats
        codes, offsets = ops.cast(codes, "int32"), ops.cast(offsets, "int32")
        turned = dihedral_on_device(ops.cast(patches, "float32"), codes, self.maps)
        if self.kind.channels == 6:  # the host made the input: (clean, input) turned together
            clean, given = turned[..., :3], turned[..., 3:]
            if self.factor > 1:
                given = given[:, :: self.factor, :: self.factor, :]
        else:
            clean = turned
            given = self.kind.on_device(self, clean, offsets, self.task)
        scale = np.float32(1 / 255)
        answer = self.core(given * scale, training=training)
        b = self.border
        target = clean[:, b : self.size - b, b : self.size - b, :] if b else clean
        out = [ops.cast(answer, "float32"), target * scale]
        weights = self.kind.loss_weights(given, self.task)
        if weights is not None:
            out.append(weights[:, b : self.size - b, b : self.size - b, :] if b else weights)
        return ops.concatenate(out, axis=-1)


def validation_pair(clean, task):
    """The fixed validation (input, target) as uint8: the damage is fixed by task.seed, so losses
    compare across epochs and runs."""
    return tasks.get(task).validation(clean, task)


def in_batches(*arrays, size=256):
    """(*float batches, count) from uint8 arrays of as many patches each (input, target, ...),
    every batch of `size` patches (the last padded with repeats; count says how many are real),
    so nothing is traced twice and a data-parallel model splits each evenly."""
    n = len(arrays[0])
    for start in range(0, n, size):
        idx = np.resize(np.arange(start, min(start + size, n)), size)
        floats = [a[idx].astype(np.float32) / np.float32(255) for a in arrays]
        yield (*floats, min(start + size, n) - start)
