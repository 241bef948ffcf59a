"""Stage 3: train a preset on the patches, resumably, and describe what was trained."""

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from tessera import TesseraError, backend, models, noise
from tessera.images import DIHEDRAL, dihedral

COLLAPSE_RATIO = 0.2  # outputs with less than this share of the targets' contrast have gone flat


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


def make_batches(
    patches, batch_size, seed, augment_on, task=None, first_epoch=0, drop_remainder=False
):
    """A Keras PyDataset of (input, target) float batches from uint8 patches.

    Shuffling, augmentation and training noise are drawn from (seed, epoch, batch), so every epoch
    sees new noise and a resumed run continues where the interrupted one would have gone. With
    drop_remainder every batch is whole (data-parallel training splits each one evenly).
    """
    import keras

    task = task or {"kind": "reconstruct"}

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = first_epoch - 1
            self.on_epoch_end()

        def __len__(self):
            if drop_remainder:
                return max(1, len(patches) // batch_size)
            return -(-len(patches) // batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            rng = np.random.default_rng([seed, self.epoch, i])
            batch = augment(patches[idx], rng) if augment_on else patches[idx]
            return make_pair(batch, task, rng)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(patches))

    return Batches()


def _callback(**hooks):
    """A Keras callback from plain functions, e.g. _callback(on_epoch_end=f)."""
    import keras

    return type("Hooks", (keras.callbacks.Callback,), hooks)()


class _Clock:
    """Measures training throughput and enforces the wall-clock budget."""

    def __init__(self, n, minutes):
        self.n, self.minutes = n, minutes
        self.seconds, self.started, self.began, self.done, self.stopped_at = [], 0, None, 0, None

    def callbacks(self):
        def on_train_begin(cb, logs=None):
            self.began = time.perf_counter()

        def on_epoch_begin(cb, epoch, logs=None):
            self.started = time.perf_counter()

        def on_test_begin(cb, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

        def on_epoch_end(cb, epoch, logs=None):
            self.done += 1
            elapsed = time.perf_counter() - self.began
            # stop after the epoch whose successor would overrun the budget
            if self.minutes and elapsed * (self.done + 1) / self.done > self.minutes * 60:
                cb.model.stop_training = True
                self.stopped_at = epoch + 1

        return _callback(
            on_train_begin=on_train_begin,
            on_epoch_begin=on_epoch_begin,
            on_test_begin=on_test_begin,
            on_epoch_end=on_epoch_end,
        )

    def elapsed_fraction(self):
        if not self.minutes or self.began is None:
            return 0.0
        return (time.perf_counter() - self.began) / (self.minutes * 60)

    def patches_per_s(self):
        # The first epoch pays for tracing and memory allocation: quote the steady rate.
        steady = self.seconds[1:] or self.seconds
        return round(self.n * len(steady) / sum(steady), 1) if steady else None


def _cosine(lr0, total_steps, first_step, clock):
    """Cosine decay of the learning rate over the epochs, or over the time budget if that ends first."""
    state = {"step": first_step}

    def on_train_batch_begin(cb, batch, logs=None):
        progress = min(1.0, max(state["step"] / total_steps, clock.elapsed_fraction()))
        cb.model.optimizer.learning_rate.assign(lr0 * 0.5 * (1 + math.cos(math.pi * progress)))
        state["step"] += 1

    return _callback(on_train_batch_begin=on_train_batch_begin)


def _optimizer(name, learning_rate):
    import keras

    table = {
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
        "adagrad": keras.optimizers.Adagrad,
    }
    return table[name](learning_rate=learning_rate)


def resume_key(settings, *files):
    """Identifies one training run: the same settings on the same data resume the same backup."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _loss(name, a, b):
    d = a.astype(np.float64) - b
    return float(np.mean(d * d) if name == "mse" else np.mean(np.abs(d)))


def quality_flags(model, val_in, val_target, train_x, settings, task):
    """Checks a user should see: outputs gone flat, or no better than the trivial answers."""
    pred = np.asarray(model.predict(val_in, batch_size=256, verbose=0), dtype=np.float32)
    model_loss = _loss(settings["loss"], pred, val_target)
    out_std = float(pred.std(axis=(1, 2)).mean())
    ref_std = float(val_target.std(axis=(1, 2)).mean())
    mean_patch = train_x.mean(axis=0, dtype=np.float64) / 255
    figures = {
        "val_loss_model": model_loss,
        "val_loss_mean_patch": _loss(
            settings["loss"], np.broadcast_to(mean_patch, val_target.shape), val_target
        ),
        "val_contrast_ratio": round(out_std / max(ref_std, 1e-6), 4),
    }
    flags = []
    if figures["val_contrast_ratio"] < COLLAPSE_RATIO:
        flags.append(
            f"collapsed: the outputs have {figures['val_contrast_ratio']:.0%} of the targets' "
            "contrast on the validation patches (the 'flat gray' failure); train longer or lower "
            "train.learning_rate"
        )
    if model_loss >= figures["val_loss_mean_patch"]:
        flags.append(
            f"no better than predicting the mean training patch (validation loss {model_loss:.5f} "
            f"vs {figures['val_loss_mean_patch']:.5f}); train longer or pick another preset"
        )
    if task["kind"] == "denoise":
        figures["val_loss_noisy_input"] = _loss(settings["loss"], val_in, val_target)
        if model_loss >= figures["val_loss_noisy_input"]:
            flags.append(
                f"no better than the noisy input itself (validation loss {model_loss:.5f} vs "
                f"{figures['val_loss_noisy_input']:.5f})"
            )
    return figures, flags


def _strategy(settings, log):
    """The distribution over train.gpus devices: Keras DataParallel on JAX, MirroredStrategy on
    TensorFlow. Returns a context manager to build and compile the model in, and the devices."""
    import contextlib

    import keras

    wanted = settings.get("gpus", 1)
    gpus = backend.devices("gpu")
    if wanted <= 1:
        return contextlib.nullcontext(), (gpus or backend.devices())[:1]
    # Without enough GPUs, virtual CPU devices (set up for testing) stand in for them.
    pool = gpus if len(gpus) >= wanted else backend.devices("cpu")
    if len(pool) < wanted:
        raise TesseraError(
            f"train.gpus is {wanted} but only {len(gpus)} GPU(s) are visible "
            f"({backend.describe()}); lower train.gpus or ask the scheduler for more"
        )
    if settings["batch_size"] % wanted:
        raise TesseraError(
            f"train.batch_size {settings['batch_size']} must be a multiple of train.gpus "
            f"({wanted}): each device gets an equal share of every batch"
        )
    chosen = pool[:wanted]
    if pool is not gpus:
        log(f"warning: {wanted} GPUs asked for, {len(gpus)} found: data-parallel over {chosen}")
    name = keras.config.backend()
    if name == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        return contextlib.nullcontext(), chosen
    if name == "tensorflow":
        import tensorflow as tf

        tf_names = [f"/{d.split(':')[0]}:{d.split(':')[-1]}" for d in chosen]
        return tf.distribute.MirroredStrategy(tf_names).scope(), chosen
    raise TesseraError(f"train.gpus > 1 needs the jax or tensorflow backend, not {name}")


def check_gpu(settings, log):
    """Say what the job was given and what the framework can use; stop if a GPU is required."""
    log(backend.describe())
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    usable = backend.devices("gpu")
    if given and given != "-1" and not usable:
        message = (
            f"the scheduler gave this job GPU(s) {given} (CUDA_VISIBLE_DEVICES) but the "
            f"{backend.name()} backend cannot use them: training runs on the CPU"
        )
        if settings.get("require_gpu"):
            raise TesseraError(
                message.replace(": training runs on the CPU", "")
                + "; install the GPU build of the backend, or set train.require_gpu: false"
            )
        log(f"warning: {message}")
    elif settings.get("require_gpu") and not usable:
        raise TesseraError(
            "train.require_gpu is true but no GPU is visible to the "
            f"{backend.name()} backend; run with a GPU (--resources gpu=1, or the slurm profile)"
        )


def train(
    train_npy,
    val_npy,
    out_model,
    out_history,
    out_summary,
    resume_root,
    settings,
    task=None,
    threads=1,
    log=print,
):
    """Train settings["preset"] and write the model, its per-epoch history and a summary.

    If an earlier run with the same settings and data was interrupted, training resumes from its
    last finished epoch; the backup lives under resume_root, outside the rule's outputs, because
    Snakemake deletes the outputs of a failed job.
    """
    import keras

    task = task or {"kind": "reconstruct"}
    backend.configure(threads)
    check_gpu(settings, log)
    if settings.get("precision", "float32") != "float32":
        keras.config.set_dtype_policy(settings["precision"])
    keras.utils.set_random_seed(settings["seed"])
    train_x = np.load(train_npy)
    val_clean = np.load(val_npy)
    val_in, val_target = make_pair(val_clean, task, noise.rng_for("validation", task))

    key = resume_key({"settings": settings, "task": task}, train_npy, val_npy)
    resume = Path(resume_root) / key
    backup, history = resume / "backup", resume / "history.tsv"
    resumed_from = _restorable_epoch(backup) or 0
    if not resumed_from and resume.exists():
        shutil.rmtree(resume)
    resume.mkdir(parents=True, exist_ok=True)
    _truncate_history(history, resumed_from)

    # The starting weights come from the seed alone, whatever devices the training is spread on.
    reference = models.build(settings["preset"])
    info = models.describe(reference)
    scope, used = _strategy(settings, log)
    with scope:
        model = models.build(settings["preset"])
        model.set_weights(reference.get_weights())
        model.compile(
            optimizer=_optimizer(settings["optimizer"], settings["learning_rate"]),
            loss=settings["loss"],
        )
    log(
        f"preset {settings['preset']}: {info}; {len(train_x)} training and {len(val_in)} "
        f"validation patches; task {task['kind']}; devices used {used}"
    )
    if resumed_from:
        log(f"resuming after epoch {resumed_from} from {backup}")

    batches = make_batches(
        train_x,
        settings["batch_size"],
        settings["seed"],
        settings["augment"],
        task,
        resumed_from,
        drop_remainder=len(used) > 1,
    )
    clock = _Clock(len(train_x), settings.get("max_minutes"))
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.CSVLogger(str(history), separator="\t", append=True),
        keras.callbacks.TerminateOnNaN(),
        clock.callbacks(),
    ]
    if settings.get("schedule") == "cosine":
        steps = len(batches)
        callbacks.append(
            _cosine(
                settings["learning_rate"], settings["epochs"] * steps, resumed_from * steps, clock
            )
        )
    started = time.perf_counter()
    fit = model.fit(
        batches,
        validation_data=(val_in, val_target),
        epochs=settings["epochs"],
        verbose=2,
        callbacks=callbacks,
    )
    wall = time.perf_counter() - started
    losses = fit.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TesseraError(
            f"training diverged: the loss became {losses[-1]} in epoch "
            f"{len(losses) + resumed_from}; the learning rate is probably too high: lower "
            f"train.learning_rate (now {settings['learning_rate']})"
        )

    weight_copies = backend.copies(model.trainable_variables[0])
    if len(used) > 1:
        # Back on one device for checking and saving: a data-parallel model wants batches that
        # split evenly over its devices.
        if keras.config.backend() == "jax":
            keras.distribution.set_distribution(None)
        trained, model = model, models.build(settings["preset"])
        model.set_weights(trained.get_weights())
    figures, flags = quality_flags(model, val_in, val_target, train_x, settings, task)
    for flag in flags:
        log(f"warning: {flag}")
    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    model.save(out_model)
    table = _read_history(history)
    table.assign(epoch=table.epoch + 1).to_csv(out_history, sep="\t", index=False)
    summary = {
        "preset": settings["preset"],
        **info,
        "task": task,
        "backend": keras.config.backend(),
        "device": ", ".join(used),
        "replicas": len(used),
        "weight_copies": weight_copies,
        "precision": settings.get("precision", "float32"),
        "epochs": int(len(table)),
        "resumed_from_epoch": resumed_from,
        "stopped_by_budget": clock.stopped_at is not None,
        "train_patches": int(len(train_x)),
        "val_patches": int(len(val_in)),
        "patches_per_s": clock.patches_per_s(),
        "wall_s": round(wall, 1),
        "final_loss": float(table["loss"].iloc[-1]),
        "final_val_loss": float(table["val_loss"].iloc[-1]),
        **figures,
        "flags": flags,
        "settings": settings,
        "versions": backend.versions(),
    }
    Path(out_summary).write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(resume, ignore_errors=True)
    return summary


def _restorable_epoch(backup):
    meta = backup / "training_metadata.json"
    if not (meta.exists() and (backup / "latest.weights.h5").exists()):
        return None
    return int(json.loads(meta.read_text())["epoch"]) or None


def _truncate_history(path, epochs):
    # An interruption between Keras' CSV line and its backup can leave one epoch too many.
    if not path.exists():
        return
    table = _read_history(path)
    table[table.epoch < epochs].to_csv(path, sep="\t", index=False)


def _read_history(path):
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    return table.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
