"""Stage 3: train a preset on the patches, resumably, and describe what was trained."""

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from tessera import TesseraError, backend, models

DIHEDRAL = 8  # the identity, three quarter turns, and each of them mirrored


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
            part = np.rot90(batch[idx], k % 4, axes=(1, 2))
            out[idx] = part[:, :, ::-1] if k >= 4 else part
    return out


def make_batches(patches, batch_size, shuffle_seed, augment_on):
    """A Keras PyDataset of (input, target) float batches in [0, 1], from uint8 patches."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = np.arange(len(patches))
            self.on_epoch_end()

        def __len__(self):
            return -(-len(patches) // batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            batch = patches[idx]
            if augment_on:
                batch = augment(batch, np.random.default_rng([shuffle_seed, self.epoch, i]))
            x = batch.astype(np.float32) / np.float32(255)
            return x, x

        def on_epoch_end(self):
            self.epoch += 1
            if shuffle_seed is not None:
                self.order = np.random.default_rng([shuffle_seed, self.epoch]).permutation(
                    len(patches)
                )

    return Batches()


class _Throughput:
    """Training patches per second, counted over the training part of each epoch only."""

    def __init__(self, n):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.started = time.perf_counter()

            def on_test_begin(self, logs=None):
                outer.seconds.append(time.perf_counter() - outer.started)

        self.n, self.seconds, self.started = n, [], None
        self.callback = Callback()

    def patches_per_s(self):
        # The first epoch pays for tracing and memory allocation; report the steady rate when there is one.
        steady = self.seconds[1:] or self.seconds
        return round(self.n * len(steady) / sum(steady), 1) if steady else None


class _Budget:
    """Stops after the epoch that would otherwise overrun a wall-clock budget."""

    def __init__(self, minutes):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                outer.start, outer.done = time.perf_counter(), 0

            def on_epoch_end(self, epoch, logs=None):
                outer.done += 1
                elapsed = time.perf_counter() - outer.start
                if minutes is not None and elapsed * (outer.done + 1) / outer.done > minutes * 60:
                    self.model.stop_training = True
                    outer.stopped_at = epoch + 1

        self.start, self.done, self.stopped_at = None, 0, None
        self.callback = Callback()


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


def train(
    train_npy,
    val_npy,
    out_model,
    out_history,
    out_summary,
    resume_root,
    settings,
    threads=1,
    log=print,
):
    """Train settings["preset"] and write the model, its per-epoch history and a summary.

    If an earlier run with the same settings and data was interrupted, training resumes from its
    last finished epoch; the backup lives under resume_root, outside the rule's outputs, because
    Snakemake deletes the outputs of a failed job.
    """
    import keras

    backend.configure(threads)
    keras.utils.set_random_seed(settings["seed"])
    train_x = np.load(train_npy)
    val_x = np.load(val_npy).astype(np.float32) / np.float32(255)

    resume = Path(resume_root) / resume_key(settings, train_npy, val_npy)
    backup, history = resume / "backup", resume / "history.tsv"
    resumed_from = _restorable_epoch(backup)
    if resumed_from is None and resume.exists():
        shutil.rmtree(resume)
    resume.mkdir(parents=True, exist_ok=True)
    _truncate_history(history, resumed_from or 0)

    model = models.build(settings["preset"])
    model.compile(
        optimizer=_optimizer(settings["optimizer"], settings["learning_rate"]),
        loss=settings["loss"],
    )
    info = models.describe(model)
    log(backend.describe())
    log(
        f"preset {settings['preset']}: {info}; {len(train_x)} training and {len(val_x)} validation patches"
    )
    if resumed_from:
        log(f"resuming after epoch {resumed_from} from {backup}")

    batches = make_batches(train_x, settings["batch_size"], settings["seed"], settings["augment"])
    speed, budget = _Throughput(len(train_x)), _Budget(settings.get("max_minutes"))
    started = time.perf_counter()
    fit = model.fit(
        batches,
        validation_data=(val_x, val_x),
        epochs=settings["epochs"],
        verbose=2,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.CSVLogger(str(history), separator="\t", append=True),
            keras.callbacks.TerminateOnNaN(),
            speed.callback,
            budget.callback,
        ],
    )
    wall = time.perf_counter() - started
    losses = fit.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TesseraError(
            f"training diverged: the loss became {losses[-1]} in epoch {len(losses) + (resumed_from or 0)}; "
            f"lower train.learning_rate (now {settings['learning_rate']})"
        )

    Path(out_model).parent.mkdir(parents=True, exist_ok=True)
    model.save(out_model)
    table = _read_history(history)
    table.assign(epoch=table.epoch + 1).to_csv(out_history, sep="\t", index=False)
    summary = {
        "preset": settings["preset"],
        **info,
        "backend": keras.config.backend(),
        "device": ", ".join(backend.devices()),
        "epochs": int(len(table)),
        "resumed_from_epoch": resumed_from or 0,
        "stopped_by_budget": budget.stopped_at is not None,
        "train_patches": int(len(train_x)),
        "val_patches": int(len(val_x)),
        "patches_per_s": speed.patches_per_s(),
        "wall_s": round(wall, 1),
        "final_loss": float(table["loss"].iloc[-1]),
        "final_val_loss": float(table["val_loss"].iloc[-1]),
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
