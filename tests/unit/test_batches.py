"""The training data path: uint8 batches read from per-image files on the host, made into float
(input, target) pairs inside the training step."""

import keras
import numpy as np
import pytest

from tessera import train
from tessera.batches import (
    Batches,
    Crops,
    InMemory,
    NpyFiles,
    PairedLoss,
    Patches,
    Trainer,
    dihedral_maps,
    dihedral_on_device,
    evenly,
    in_batches,
    validation_patches,
)
from tests.conftest import DATA, patch_dataset, sample

DENOISE = {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0}
RECONSTRUCT = {"kind": "reconstruct"}


def strip_patches(n=32, size=16):
    return np.stack(
        [sample("astronaut.png", (x, 50, x + size, 50 + size)) for x in range(0, 10 * n, 10)]
    )


def test_device_augmentation_moves_input_and_target_together():
    # Input and target stacked on the channel axis go through one call: if they were transformed
    # independently (the blog post's bug), the halves would stop matching.
    patches = strip_patches()
    pair = np.concatenate([patches, patches[..., ::-1]], axis=3)
    codes = np.random.default_rng(0).integers(0, 8, len(pair)).astype(np.int32)
    out = np.asarray(
        dihedral_on_device(keras.ops.convert_to_tensor(pair), codes, dihedral_maps(16))
    )
    assert np.array_equal(out[..., :3], out[..., 3:][..., ::-1])
    # and the transforms really vary: all eight appear, and each output is one of its patch's eight
    seen = set()
    for p, o in zip(patches, out[..., :3]):
        variants = [np.rot90(p, k) for k in range(4)] + [np.rot90(p, k)[:, ::-1] for k in range(4)]
        matches = [k for k, v in enumerate(variants) if np.array_equal(v, o)]
        assert matches
        seen.add(matches[0])
    assert len(seen) == 8


def identity_trainer(task, size=16):
    inp = keras.Input((None, None, 3))
    core = keras.Model(inp, keras.layers.Identity()(inp), name="identity")
    return Trainer(core, size, task, seed=0)


def test_the_training_step_pairs_the_target_with_the_input_it_was_made_from():
    patches = strip_patches()
    codes = np.arange(len(patches), dtype=np.int32) % 8
    offsets = np.arange(len(patches), dtype=np.int32) * 5000
    out = np.asarray(identity_trainer(RECONSTRUCT)((patches, codes, offsets)))
    given, target = out[..., :3], out[..., 3:]
    assert np.array_equal(given, target)  # reconstruct: the input is the target
    assert np.allclose(
        target * 255, dihedral_on_device(patches.astype(np.float32), codes, dihedral_maps(16))
    )

    out = np.asarray(identity_trainer(DENOISE)((patches, codes, offsets)))
    given, target = out[..., :3] * 255, out[..., 3:] * 255
    residual = given - target
    assert 20 < residual.std() < 27  # sigma 25, a little less where clipping at 0 and 255 bites
    assert np.allclose(given, np.round(given), atol=1e-3)  # 8-bit values, as a noisy file holds
    # the noise is not tied to the flip: the same patch with another code gets other noise
    again = np.asarray(identity_trainer(DENOISE)((patches, codes, offsets + 1)))
    assert not np.array_equal(again[..., :3], out[..., :3])


def test_salt_and_pepper_on_the_device_hits_the_rate():
    task = dict(DENOISE, noise="salt_pepper", rate=0.1)
    flat = np.full((64, 16, 16, 3), 128, np.uint8)
    offsets = np.arange(64, dtype=np.int32) * 1000
    out = np.asarray(identity_trainer(task)((flat, np.zeros(64, np.int32), offsets)))[..., :3]
    hit = (np.abs(out * 255 - 128) > 1).any(axis=3)
    assert 0.08 < hit.mean() < 0.12
    assert set(np.unique(np.rint(out[hit] * 255))) == {0, 255}
    assert 0.4 < (out[hit][:, 0] > 0.5).mean() < 0.6


def test_batches_leave_the_host_as_uint8_drawn_from_seed_epoch_and_batch():
    patches = strip_patches(40)
    source = Patches(InMemory([patches[:25], patches[25:]]))
    data = Batches(source, 16, seed=3, augment_on=True)
    assert len(data) == 3
    (x, codes, offsets), _ = data[0]
    assert x.dtype == np.uint8 and x.shape == (16, 16, 16, 3)
    assert codes.dtype == np.int32 and set(codes) <= set(range(8)) and len(set(codes)) > 1
    assert offsets.dtype == np.int32 and offsets.min() >= 0
    assert data[2][0][0].shape[0] == 40 - 32
    # every patch once per epoch, a new order and new draws the next epoch
    first = [data[i][0] for i in range(3)]
    epoch0 = np.concatenate([b[0] for b in first])
    assert sorted(map(bytes, epoch0)) == sorted(map(bytes, patches))
    data.on_epoch_end()
    assert not np.array_equal(data[0][0][1], first[0][1])
    # a resumed run (starting at epoch 1) draws exactly what the uninterrupted one drew
    resumed = Batches(source, 16, seed=3, augment_on=True, first_epoch=1)
    for i in range(3):
        for a, b in zip(resumed[i][0], data[i][0]):
            assert np.array_equal(a, b)


def test_steps_per_epoch_makes_an_epoch_that_many_whole_batches_of_a_fresh_shuffle():
    source = Patches(InMemory([strip_patches(40)]))
    data = Batches(source, 16, seed=0, augment_on=False, steps=5)
    assert len(data) == 5 and data.patches_per_epoch == 80
    assert all(data[i][0][0].shape[0] == 16 for i in range(5))  # wraps around: always whole
    before = data[0][0][0]
    data.on_epoch_end()
    assert not np.array_equal(before, data[0][0][0])


def test_files_are_read_with_a_bounded_number_open(tmp_path):
    arrays = [np.full((3, 4, 4, 3), k, np.uint8) for k in range(5)]
    paths = []
    for k, a in enumerate(arrays):
        paths.append(tmp_path / f"{k}.npy")
        np.save(paths[-1], a)
    files = NpyFiles(paths, open_files=2)
    source = Patches(files)
    got = source.take(np.arange(15))
    assert np.array_equal(got, np.concatenate(arrays)) and len(files._fds) <= 2
    assert np.array_equal(source.take(np.array([14, 0])), np.stack([arrays[4][2], arrays[0][0]]))


def test_validation_patches_are_bounded_and_spread_over_the_images():
    assert list(evenly([100, 3, 50], 60)) == [29, 3, 28]
    assert list(evenly([5, 5], 100)) == [5, 5]
    arrays = [np.full((100, 4, 4, 3), k, np.uint8) for k in range(3)]
    val = validation_patches(InMemory(arrays), 30, 4)
    assert len(val) == 30 and list(np.bincount(val[:, 0, 0, 0])) == [10, 10, 10]


def fit_weights(source, epochs=2, task=RECONSTRUCT, first_epoch=0, trainer=None):
    keras.utils.set_random_seed(0)
    from tessera import models

    if trainer is None:
        core = models.build("compact")
        trainer = Trainer(core, 16, task, seed=0)
        trainer.compile(optimizer=keras.optimizers.Adam(0.002), loss=PairedLoss())
    data = Batches(source, 32, seed=0, augment_on=True, first_epoch=first_epoch)
    trainer.fit(data, epochs=epochs - first_epoch, verbose=0)
    return trainer, [w.copy() for w in trainer.core.get_weights()]


def test_training_from_the_files_gives_the_weights_of_training_from_memory(tmp_path):
    split_tsv, files = patch_dataset(tmp_path)
    train_files = [files["coffee.png"], files["rocket.jpg"]]
    on_disk = Patches(NpyFiles(train_files))
    in_memory = Patches(InMemory([np.load(f) for f in train_files]))
    _, a = fit_weights(on_disk, task=DENOISE)
    _, b = fit_weights(in_memory, task=DENOISE)
    # Same bytes in the same order through the same kernels: only float noise may differ, far
    # below the change one training step makes (about 1e-3 here).
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert any(np.abs(w).max() > 0 for w in a)


def test_validation_in_batches_gives_keras_own_val_loss(tmp_path):
    from tessera import models

    keras.utils.set_random_seed(0)
    core = models.build("compact")
    core.compile(loss="mse")
    val = strip_patches(70)
    x = val.astype(np.float32) / 255
    # batches of 32: two whole ones and a padded one, whose repeats must not count
    ours = train.evaluate(core, in_batches(val, val, val, size=32), "mse")["model"]
    theirs = core.evaluate(x, x, batch_size=70, verbose=0)
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_random_crops_are_fresh_each_epoch_deterministic_and_resume_where_they_left_off(tmp_path):
    images = [sample("coffee.png", (0, 0, 120, 90)), sample("rocket.jpg", (0, 0, 100, 80))]
    paths = []
    for k, image in enumerate(images):
        paths.append(tmp_path / f"{k}.npy")
        np.save(paths[-1], image)
    crops = Crops(NpyFiles(paths), 16, counts=[10, 6], seed=5)
    assert len(crops) == 16
    got = crops.take(np.arange(16))
    for k, (y, x) in enumerate(crops.positions[0]):
        assert np.array_equal(got[k], images[0][y : y + 16, x : x + 16])
    first = [p.copy() for p in crops.positions]
    crops.set_epoch(1)
    assert not np.array_equal(first[0], crops.positions[0])  # fresh positions
    again = Crops(NpyFiles(paths), 16, counts=[10, 6], seed=5)
    assert all(
        np.array_equal(a, b) for a, b in zip(first, again.positions)
    )  # same seed, same crops
    # a run resumed at epoch 1 gets the crops and draws of the uninterrupted run's epoch 1
    whole = Batches(Crops(NpyFiles(paths), 16, [10, 6], seed=5), 8, seed=0, augment_on=True)
    whole.on_epoch_end()
    resumed = Batches(Crops(NpyFiles(paths), 16, [10, 6], seed=5), 8, 0, True, first_epoch=1)
    for i in range(2):
        for a, b in zip(whole[i][0], resumed[i][0]):
            assert np.array_equal(a, b)
    # validation cuts the images on the grid instead, at most `limit` crops
    val = validation_patches(NpyFiles(paths), 12, 16, stride=16)
    assert len(val) == 12 and val.dtype == np.uint8


def test_training_with_random_crops_learns_and_writes_its_sampling(tmp_path):
    from tessera.patches import run as cut

    files, rows = {}, []
    for name, side in (("coffee.png", "train"), ("rocket.jpg", "train"), ("chelsea.png", "val")):
        image = tmp_path / name
        from PIL import Image

        Image.fromarray(sample(name, (0, 0, 160, 120))).save(image.with_suffix(".png"))
        info = cut(image.with_suffix(".png"), name, tmp_path / f"{name}.npy", tmp_path / f"{name}.json",
                   16, 8, 200, 0, sampling="random")  # fmt: skip
        assert np.load(tmp_path / f"{name}.npy").shape == (120, 160, 3) and info["patches"] == 200
        files[name] = tmp_path / f"{name}.npy"
        rows.append(f"{name}\t{name}\t{side}\t{info['patches']}")
    (tmp_path / "split.tsv").write_text("image\tpath\tsplit\tpatches\n" + "\n".join(rows) + "\n")
    settings = dict(
        preset="compact", epochs=3, batch_size=16, optimizer="adam", learning_rate=0.002,
        loss="mse", augment=True, seed=0, max_minutes=None,
    )  # fmt: skip
    data = dict(DATA, sampling="random", stride=8)
    out = tmp_path / "model"
    summary = train.train(
        tmp_path / "split.tsv", files, out / "m.keras", out / "h.tsv", out / "s.json",
        tmp_path / "resume", settings, data,
    )  # fmt: skip
    assert summary["sampling"] == "random" and summary["train_patches"] == 400
    assert summary["final_loss"] < 0.05 and summary["val_patches"] == DATA["max_val_patches"]


@pytest.mark.parametrize("task", [RECONSTRUCT, DENOISE], ids=["reconstruct", "denoise"])
def test_the_training_step_runs_under_mixed_bfloat16(task):
    # auto picks bfloat16 on some machines only: run it everywhere
    from tessera import models

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        trainer = Trainer(models.build("dncnn"), 16, task, seed=0)
        trainer.compile(optimizer=keras.optimizers.Adam(0.002), loss=PairedLoss())
        trainer.fit(Batches(Patches(InMemory([strip_patches()])), 8, 0, True), epochs=1, verbose=0)
        out = trainer((strip_patches(2), np.zeros(2, np.int32), np.zeros(2, np.int32)))
    finally:
        keras.config.set_dtype_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert np.isfinite(np.asarray(out)).all()


# Every task, and each degradation of restore alone: the alignment check below runs on all.
DEGRADATIONS = {
    "jpeg": {"kind": "jpeg", "quality": [10, 30]},
    "blur": {"kind": "blur", "sigma": [0.5, 2]},
    "downscale": {"kind": "downscale", "factor": [2, 4]},
    "noise": {"kind": "noise", "sigma": [5, 50]},
    "holes": {"kind": "holes", "size": [2, 6], "count": [4, 8]},
}
EVERY_TASK = {
    "reconstruct": RECONSTRUCT,
    "denoise": DENOISE,
    **{
        f"restore-{name}": {"kind": "restore", "degradations": [d], "seed": 0}
        for name, d in DEGRADATIONS.items()
    },
    "restore-chain": {"kind": "restore", "degradations": list(DEGRADATIONS.values()), "seed": 0},
}


def trained_pair(task, patches, first_epoch=0, batch=0, epochs_on=0):
    """The (input, target) uint8 pair the training step makes from batch `batch` of an epoch."""
    data = Batches(Patches(InMemory([patches])), 16, 3, True, first_epoch, task=task)
    for _ in range(epochs_on):
        data.on_epoch_end()
    (x, codes, offsets), _ = data[batch]
    out = np.asarray(identity_trainer(task)((x, codes, offsets))) * 255
    return np.rint(out[..., :3]), np.rint(out[..., 3:6]), x, codes


@pytest.mark.parametrize("task", EVERY_TASK.values(), ids=EVERY_TASK.keys())
def test_every_task_changes_only_the_input_and_keeps_it_aligned_with_the_target(task):
    patches = strip_patches(32)
    given, target, x, codes = trained_pair(task, patches)
    # the target is the clean patch, flipped and turned by its code, and nothing else
    clean = x[..., :3].astype(np.float32)
    assert np.array_equal(target, dihedral_on_device(clean, codes, dihedral_maps(16)))

    # the input lies closer to its own target than to any other flip, turn or one-pixel shift of
    # it, over the batch: what the blog post's bug (input and target transformed apart) breaks
    def moved(t):
        yield from (np.rot90(t, k, axes=(1, 2)) for k in range(1, 4))
        yield from (np.rot90(t, k, axes=(1, 2))[:, :, ::-1] for k in range(4))
        yield from (np.roll(t, s, axis=a) for s in (-1, 1) for a in (1, 2))

    own = np.mean((given - target) ** 2)
    assert all(own < np.mean((given - m) ** 2) for m in moved(target))
    if task["kind"] != "reconstruct":
        assert not np.array_equal(given, target)


@pytest.mark.parametrize(
    "task", [t for k, t in EVERY_TASK.items() if k.startswith("restore")],
    ids=[k for k in EVERY_TASK if k.startswith("restore")],
)  # fmt: skip
def test_host_damage_is_drawn_from_seed_epoch_and_batch_and_resumes_exactly(task):
    patches = strip_patches(40)
    first = trained_pair(task, patches, epochs_on=1)[0]
    # the same (seed, epoch, batch) draws the same damage; a run resumed at epoch 1 too
    assert np.array_equal(first, trained_pair(task, patches, epochs_on=1)[0])
    assert np.array_equal(first, trained_pair(task, patches, first_epoch=1)[0])
    # another epoch or batch draws other damage
    assert not np.array_equal(first, trained_pair(task, patches)[0])
    assert not np.array_equal(first, trained_pair(task, patches, epochs_on=1, batch=1)[0])
