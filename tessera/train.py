"""Stage 3: train a preset on the patches, resumably, and describe what was trained."""

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from tessera import TesseraError, backend, models, tasks
from tessera.files import atomic, fsync, naming, write_json, write_tsv
from tessera.measure import collapsed
from tessera.split import read_table
from tessera.batches import (
    CHARBONNIER_EPS,
    Batches,
    Crops,
    NpyFiles,
    PairedLoss,
    Patches,
    Trainer,
    in_batches,
    validation_pair,
    validation_patches,
)


class Clock(keras.callbacks.Callback):
    """Measures training throughput and stops after the epoch whose successor would overrun the
    wall-clock budget (minutes; None for none). The budget counts the training time of every
    epoch done, those before a resume included (`spent`, seconds, kept in the backup), so an
    interrupted run trains as long in all as one never interrupted."""

    def __init__(self, n, minutes, validation, spent=0.0, epochs_before=0):
        super().__init__()
        self.n, self.minutes, self.validation = n, minutes, validation
        self.spent, self.epochs_before = float(spent), epochs_before
        self.seconds, self.started, self.began, self.done, self.stopped_at = [], 0, None, 0, None

    def on_train_begin(self, logs=None):
        self.began = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # the epoch's training alone: the validation callback runs before this one, and times
        # itself (a per-batch hook would make Keras wait for the device after every step)
        self.seconds.append(time.perf_counter() - self.started - self.validation.seconds)
        self.done += 1
        epochs = self.epochs_before + self.done
        if self.minutes and self.elapsed() * (epochs + 1) / epochs > self.minutes * 60:
            self.model.stop_training = True
            self.stopped_at = epoch + 1

    def elapsed(self):
        """Seconds of training so far, the epochs before a resume included."""
        return self.spent + (time.perf_counter() - self.began if self.began is not None else 0)

    def elapsed_fraction(self):
        return self.elapsed() / (self.minutes * 60) if self.minutes else 0.0

    def patches_per_s(self):
        # The first epoch pays for tracing and memory allocation: quote the steady rate.
        steady = self.seconds[1:] or self.seconds
        return round(self.n * len(steady) / sum(steady), 1) if steady else None


class LearningRate(keras.callbacks.Callback):
    """The learning rate of each step: a linear warm-up over the first `warmup` steps, then
    constant or a cosine decay over the epochs, or over the time budget if that ends first (a
    Keras schedule knows only steps, not the clock). The step count starts where a resumed run
    left off and the clock counts the time spent before it, so a resume does not restart the
    schedule."""

    def __init__(self, lr0, total_steps, first_step, clock, cosine=True, warmup=0):
        super().__init__()
        self.lr0, self.total, self.step, self.clock = lr0, total_steps, first_step, clock
        self.cosine, self.warmup = cosine, warmup

    def rate(self):
        rate = self.lr0 * (min(1.0, (self.step + 1) / self.warmup) if self.warmup else 1.0)
        if self.cosine:
            progress = min(1.0, max(self.step / self.total, self.clock.elapsed_fraction()))
            rate *= 0.5 * (1 + math.cos(math.pi * progress))
        return rate

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate())
        self.step += 1


OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
    "adagrad": "Adagrad",
}


def make_optimizer(settings):
    """Keras' optimizer of train.optimizer, with AdamW's weight decay, gradient clipping by norm
    and an exponential moving average of the weights (Keras' use_ema) where the settings ask."""
    options = {"learning_rate": float(settings["learning_rate"])}  # Keras refuses an int: 0
    if settings["optimizer"] == "adamw":
        options["weight_decay"] = float(settings.get("weight_decay", 1e-4))
    if settings.get("clipnorm"):
        options["clipnorm"] = float(settings["clipnorm"])
    if settings.get("ema"):
        options.update(use_ema=True, ema_momentum=float(settings["ema"]))
    return getattr(keras.optimizers, OPTIMIZERS[settings["optimizer"]])(**options)


def resume_key(settings, *files):
    """Identifies one training run: the same settings (the code version among them) on the same
    data resume the same backup."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _loss(name, a, b, weights=None):
    d = a.astype(np.float64) - b
    if name == "mse":
        e = d * d
    elif name == "charbonnier":
        e = np.sqrt(d * d + CHARBONNIER_EPS**2)
    else:
        e = np.abs(d)
    if weights is None:
        return float(np.mean(e))
    # as PairedLoss counts it: each patch's mean over its counted pixels
    w = np.broadcast_to(weights, e.shape)
    per_patch = (e * w).sum(axis=(1, 2, 3)) / np.maximum(w.sum(axis=(1, 2, 3)), 1)
    return float(per_patch.mean())


def evaluate(model, batches, loss, task=None, psnr=False):
    """Means over validation batches of (input, target, input as an output, count) from
    batches.in_batches: the model's loss, the loss of each patch's own mean colour (of what the
    model is given), of the input itself (an upscale task's: its bicubic enlargement), and the
    contrast of the outputs and the targets. Where the task counts its loss on some pixels only
    (holes), every loss is counted there. With psnr, also the squared errors of the model and of
    the input ("mse", "input_mse"), whatever the loss. One batch of floats at a time."""
    kind = tasks.get(task)
    sums = dict.fromkeys(("model", "mean_colour", "input", "out_std", "ref_std"), 0.0)
    total = 0
    for x, y, ref, n in batches:
        pred = np.asarray(model.predict_on_batch(x), dtype=np.float32)[:n]
        weights = kind.loss_weights(x[:n] * np.float32(255), task or {})
        weights = None if weights is None else np.asarray(weights)
        # a model with an output border (valid convolutions) answers for the patches' centres
        b = (y.shape[1] - pred.shape[1]) // 2
        colour = x[:n].mean(axis=(1, 2), keepdims=True)  # of the whole patch the model sees
        y, ref = (a[:n, b : a.shape[1] - b, b : a.shape[2] - b] for a in (y, ref))
        if weights is not None and b:
            weights = weights[:, b : weights.shape[1] - b, b : weights.shape[2] - b]
        flat = np.broadcast_to(colour, y.shape)
        for key, value in (
            ("model", _loss(loss, pred, y, weights)),
            ("mean_colour", _loss(loss, flat, y, weights)),
            ("input", _loss(loss, ref, y, weights)),
            ("out_std", float(pred.std(axis=(1, 2)).mean())),
            ("ref_std", float(y.std(axis=(1, 2)).mean())),
        ):
            sums[key] += value * n
        if psnr:  # the PSNR a user reads is of the squared error, whatever the loss
            for key, a in (("mse", pred), ("input_mse", ref)):
                sums[key] = sums.get(key, 0.0) + _loss("mse", a, y, weights) * n
        total += n
    return {k: v / total for k, v in sums.items()}


def validation_batches(given, target, task):
    """The validation patches in float batches: (input, target, input as an output, count)."""
    return in_batches(given, target, tasks.get(task).as_output(given, task or {}))


def quality_flags(model, given, target, loss, task):
    """Checks a user should see: outputs gone flat, or no better than the trivial answers."""
    mean = evaluate(model, validation_batches(given, target, task), loss, task, psnr=True)
    figures = {
        "val_loss_model": mean["model"],
        "val_loss_mean_colour": mean["mean_colour"],
        "val_contrast_ratio": round(mean["out_std"] / max(mean["ref_std"], 1e-6), 4),
        "val_psnr_db": _psnr(mean["mse"]),
    }
    flags = [f for f in [collapsed(figures["val_contrast_ratio"], "the validation patches")] if f]
    if mean["model"] >= mean["mean_colour"]:
        flags.append(
            "no better than predicting each patch's own mean colour (validation loss "
            f"{mean['model']:.5f} vs {mean['mean_colour']:.5f}); train longer or pick another "
            "preset"
        )
    kind = tasks.get(task)
    if not kind.input_is_target:
        figures[f"val_loss_{kind.input_word}_input"] = mean["input"]
        figures["val_psnr_input_db"] = _psnr(mean["input_mse"])
        if mean["model"] >= mean["input"]:
            flags.append(
                f"no better than the {kind.input_word} input itself (validation loss "
                f"{mean['model']:.5f} vs {mean['input']:.5f})"
            )
    return figures, flags


def _psnr(mse):
    """The PSNR (dB) of a mean squared error of values in 0..1, to 0.01 dB (None for no error)."""
    return round(float(10 * np.log10(1 / mse)), 2) if mse > 0 else None


def swap_averages(optimizer):
    """Exchange the model's weights with the optimizer's moving averages of them (train.ema),
    as Keras' SwapEMAWeights callback does; twice is the identity."""
    swap = keras.callbacks.SwapEMAWeights()
    if keras.config.backend() == "tensorflow":
        swap._tf_swap_variables(optimizer)
    else:
        swap._backend_swap_variables(optimizer)


class Validation(keras.callbacks.Callback):
    """val_loss of the model being trained, in batches from the uint8 validation patches (Keras'
    own validation would need them as floats at once, and go through the training step's input
    path), measured on the weights that would be saved: with train.ema, the moving averages.
    Keeps the weights of the epoch with the lowest val_loss so far (`best`). It must come before
    the callbacks that read val_loss."""

    def __init__(self, core, given, target, loss, task, best=None):
        super().__init__()
        self.core, self.given, self.target, self.loss, self.task = core, given, target, loss, task
        self.seconds = 0.0
        # (epoch, val_loss, weights) of the best epoch so far; a resumed run's comes from its backup
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        averaged = getattr(self.model.optimizer, "use_ema", False)
        if averaged:
            swap_averages(self.model.optimizer)
        try:
            batches = validation_batches(self.given, self.target, self.task)
            logs["val_loss"] = evaluate(self.core, batches, self.loss, self.task)["model"]
            if self.best is None or logs["val_loss"] < self.best[1]:
                self.best = (epoch + 1, logs["val_loss"], self.core.get_weights())
        finally:
            if averaged:
                swap_averages(self.model.optimizer)
        self.seconds = time.perf_counter() - started


def _strategy(settings, log):
    """The distribution over train.gpus devices: Keras DataParallel on JAX, MirroredStrategy on
    TensorFlow. Returns a context manager to build and compile the model in, and the devices."""
    import contextlib

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
                + "; install the GPU build of the backend (requirements-gpu.txt, with "
                "KERAS_BACKEND=jax), or set train.require_gpu: false"
            )
        log(f"warning: {message}")
    elif settings.get("require_gpu") and not usable:
        raise TesseraError(
            "train.require_gpu is true but no GPU is visible to the "
            f"{backend.name()} backend; run with a GPU (--resources gpu=1, or the slurm profile)"
        )


@dataclass
class Resume:
    """Where an interrupted run's backups live, the epoch it can resume after, the backup to
    resume from (None: from scratch), the history up to that epoch (a list of rows) and the
    rest of its state.json (the training seconds spent, the best epoch so far)."""

    folder: Path
    after_epoch: int
    state: Path = None
    rows: list = None
    meta: dict = None

    def best(self):
        """(epoch, val_loss, weights) of the best epoch before the resume, or None."""
        if self.state is None or not (self.state / BEST).exists():
            return None
        with np.load(self.state / BEST) as saved:
            weights = [saved[f"w{k}"] for k in range(len(saved.files))]
        return self.meta["best_epoch"], self.meta["best_val_loss"], weights


def resume_state(resume_root, settings, task, *inputs, log=print):
    """The last whole backup of an earlier, interrupted run of the same settings (the code
    version among them) on the same data, or a clean folder for this run's. A damaged backup is
    passed over, with one line; the backups of other settings or code are removed: nothing
    could resume from them any more."""
    key = resume_key({"settings": settings, "task": task}, *inputs)
    root = Path(resume_root)
    folder = root / key
    for stale in root.glob(".*.old.tmp"):  # what a kill left of a removal
        shutil.rmtree(stale, ignore_errors=True)
    for other in root.glob("*"):
        if other.is_dir() and other.name != key and not other.name.startswith("."):
            log(f"removing the backup {other}: it was made by other settings or code")
            _remove(other)
    states = sorted(folder.glob("epoch-*"), reverse=True) if folder.is_dir() else []
    damaged = []
    for state in states:
        rows, meta, problem = _restorable(state)
        if problem is None:
            if damaged:
                log(f"warning: {'; '.join(damaged)}: resuming after epoch {len(rows)} instead")
            return Resume(folder, len(rows), state, rows, meta)
        damaged.append(f"the backup {state} is damaged ({problem})")
    if damaged:
        log(f"warning: {'; '.join(damaged)}: training starts from scratch")
    if folder.exists():
        _remove(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Resume(folder, 0, None, [], {})


class Backup(keras.callbacks.Callback):
    """After every epoch, the weights (with the optimizer's state, its moving averages
    included), the history so far, the training seconds spent and the best epoch's weights,
    kept together as one folder that appears under its final name only once complete, so that
    they agree whatever moment a kill falls on. An epoch whose loss is not finite is never backed
    up. The last two backups are kept; the weights of resume.state are loaded when training
    begins."""

    KEEP = 2

    def __init__(self, resume, clock, validation):
        super().__init__()
        self.resume, self.rows = resume, list(resume.rows)
        self.clock, self.validation = clock, validation

    def on_train_begin(self, logs=None):
        if self.resume.state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(str(self.resume.state / WEIGHTS))
        except Exception as e:
            _remove(self.resume.folder)
            why = " ".join(str(e).split())[:160]  # Keras lists every layer, over many lines
            raise TesseraError(
                f"the backup {self.resume.state} does not fit this model ({why}); it is "
                "removed: run the same command again to train from scratch"
            ) from e

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(v) for k, v in sorted((logs or {}).items())}}
        self.rows.append(row)
        if all(math.isfinite(v) for v in row.values()):
            _save_state(
                self.resume.folder, self.model, self.rows, self.KEEP, self.clock.elapsed(),
                self.validation.best,
            )  # fmt: skip


def model_spec(settings, task=None):
    """The network to train: settings["model"] (the config's model section as the rule passes it,
    defaults filled in), or a preset's name in settings["preset"]; with what the task adds to it
    (a mask of holes)."""
    spec = settings.get("model") or settings["preset"]
    spec = {"preset": spec} if isinstance(spec, str) else dict(spec)
    return models.normalise({**spec, **tasks.get(task).model_options(task or {})})


def _layers_of(model):
    # (kind, weight shapes) of each layer with weights, in order: what a weights file must match
    return [
        (type(layer).__name__, sorted(tuple(w.shape) for w in layer.weights))
        for layer in model.layers
        if layer.weights
    ]


def _saved_layers(path):
    """(kind, weight shapes) of each layer with weights of a saved .keras file, read from its
    config and weights without building (nor running) anything of it."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    found, used = [], {}
    for layer in config["config"]["layers"]:
        # Keras files each layer's weights under its class's snake-case name, numbered by class
        name = re.sub(
            "([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", layer["class_name"])
        ).lower()
        used[name] = used.get(name, -1) + 1
        group = weights.get(f"layers/{name}{f'_{used[name]}' if used[name] else ''}/vars")
        shapes = sorted(tuple(group[k].shape) for k in group) if group is not None else []
        if shapes:
            found.append((layer["class_name"], shapes))
    return found


def start_from(model, path):
    """Load the weights of an earlier model.keras into model (model.init), or say in one line how
    the two networks differ."""
    import warnings

    path = Path(path)
    try:
        theirs = _saved_layers(path)
    except Exception as e:  # not a zip, no config: not a model.keras
        raise TesseraError(
            f"model.init: {path} is not a model.keras ({type(e).__name__}: {e})"
        ) from None
    ours = _layers_of(model)
    for k, (mine, saved) in enumerate(zip(ours, theirs)):
        if mine != saved:
            raise TesseraError(
                f"model.init: {path} is another network: its layer {k + 1} with weights is "
                f"{saved[0]} {saved[1]}, this network's is {mine[0]} {mine[1]}"
            )
    if len(ours) != len(theirs):
        raise TesseraError(
            f"model.init: {path} is another network: it has {len(theirs)} layers with weights, "
            f"this network {len(ours)}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.load_weights(str(path))
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise TesseraError(f"model.init: {path} does not fit this network: {first}") from None


def compiled_model(settings, data, task, log):
    """The network, and the model that trains it (uint8 batches in), built and compiled under the
    distribution over train.gpus devices; the network's description; the devices used."""
    spec = model_spec(settings, task)
    # The starting weights come from the seed alone (or model.init), whatever devices the
    # training is spread on.
    reference = models.build(spec)
    if spec.get("init"):
        start_from(reference, spec["init"])
        log(f"starting from the weights of {spec['init']}")
    info = models.describe(reference)
    if data["size"] % info["size_multiple"]:
        raise TesseraError(
            f"patches.size: {data['size']} is not a multiple of {info['size_multiple']}, the size "
            f"multiple of {models.label(spec)}"
        )
    scope, used = _strategy(settings, log)
    with scope:
        core = models.build(spec)
        core.set_weights(reference.get_weights())
        trainer = Trainer(core, data["size"], task, settings["seed"])
        trainer.compile(
            optimizer=make_optimizer(settings),
            loss=PairedLoss(settings["loss"]),
        )
        # built before fit, so that an interrupted run's backed-up weights can be loaded into it
        n, s = len(used), data["size"]
        channels = trainer.kind.channels
        trainer(
            (np.zeros((n, s, s, channels), np.uint8), np.zeros(n, np.int32), np.zeros(n, np.int32))
        )
    return core, trainer, info, used


def load_data(split_tsv, patch_files, data, seed):
    """The training patches as a source to draw batches from, and the validation patches (uint8,
    at most data["max_val_patches"]), from the per-image files the split table names."""
    table = read_table(split_tsv)
    table = table[table.patches > 0]
    files = {
        side: [patch_files[i] for i in table.image[table.split == side]]
        for side in ("train", "val")
    }
    if data.get("sampling") == "random":
        counts = table.patches[table.split == "train"].tolist()
        source = Crops(NpyFiles(files["train"]), data["size"], counts, seed)
        stride = data["stride"]
    else:
        source, stride = Patches(NpyFiles(files["train"])), None
    val = validation_patches(NpyFiles(files["val"]), data["max_val_patches"], data["size"], stride)
    return source, val


def tensorboard(folder, resumed, log):
    """TensorBoard's callback writing to folder (cleared for a run that does not resume, so that
    a retrained model's curves do not lie over the old ones); None where it cannot work: its
    summary writer is TensorFlow's, whatever the Keras backend."""
    try:
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError as e:
        log(f"warning: no TensorBoard logs: {e.name} is not installed (requirements.txt)")
        return None
    if not resumed:
        shutil.rmtree(folder, ignore_errors=True)
    return keras.callbacks.TensorBoard(
        str(folder), write_graph=False, profile_batch=0, update_freq="epoch"
    )


def _callbacks(settings, resume, clock, validation, steps_per_epoch, board=None):
    callbacks = [
        validation,  # first: the ones after it read val_loss
        clock,
        Backup(resume, clock, validation),  # the history line and the backup, as one step
        keras.callbacks.TerminateOnNaN(),
    ] + ([board] if board else [])
    cosine, warmup = settings.get("schedule") == "cosine", settings.get("warmup") or 0
    if cosine or warmup:
        total = settings["epochs"] * steps_per_epoch
        first = resume.after_epoch * steps_per_epoch
        callbacks.append(
            LearningRate(settings["learning_rate"], total, first, clock, cosine, warmup)
        )
    return callbacks


def fit(model, batches, settings, callbacks, resumed_from):
    """model.fit, and one clear line if the loss diverged. Returns the wall time in seconds."""
    started = time.perf_counter()
    history = model.fit(
        batches,
        epochs=settings["epochs"],
        initial_epoch=resumed_from,
        verbose=2,
        callbacks=callbacks,
        # Batches shuffles by (seed, epoch) already; Keras' own shuffle of the batch order draws
        # from the global random state, which a resumed run does not share with the run it
        # resumes: it made the resumed run's epochs see their batches in another order
        shuffle=False,
    )
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TesseraError(
            f"training diverged: the loss became {losses[-1]} in epoch "
            f"{len(losses) + resumed_from}; the learning rate is probably too high: lower "
            f"train.learning_rate (now {settings['learning_rate']})"
        )
    return time.perf_counter() - started


def _on_one_device(model, settings, task, used):
    """A data-parallel model wants batches that split evenly over its devices: for checking and
    saving, the same weights in a model on one device."""
    if len(used) <= 1:
        return model
    if keras.config.backend() == "jax":
        keras.distribution.set_distribution(None)
    single = models.build(model_spec(settings, task))
    single.set_weights(model.get_weights())
    return single


def train(
    split_tsv,
    patch_files,
    out_model,
    out_history,
    out_summary,
    resume_root,
    settings,
    data,
    task=None,
    threads=1,
    log=print,
    code=None,
):
    """Train settings["model"] (or settings["preset"]) and write the model, its per-epoch history
    and a summary; TensorBoard logs go to a tensorboard/ folder beside the model.

    split_tsv says which image is on which side; patch_files maps each image id to its patch file
    (whole images with data["sampling"] == "random"); data holds the patch settings (size, stride,
    sampling) and max_val_patches. If an earlier run with the same settings, data and code
    version (`code`, the rule's hash of the modules training runs) was interrupted, training
    resumes from its last finished epoch; the backup lives under resume_root, outside the rule's
    outputs, because Snakemake deletes the outputs of a failed job.
    """
    task = task or {"kind": "reconstruct"}
    started_at = time.time()
    policy, why = _set_up(settings, threads, log)
    source, val = load_data(split_tsv, patch_files, data, settings["seed"])
    val_in, val_target = validation_pair(val, task)
    spec = model_spec(settings, task)
    inputs = [split_tsv, *sorted(patch_files.values()), *([spec["init"]] if "init" in spec else [])]
    resume = resume_state(resume_root, {**settings, **data, "code": code}, task, *inputs, log=log)
    core, trainer, info, used = compiled_model(settings, data, task, log)
    log(
        f"model {models.label(spec)}: {info}; {len(source)} training patches per epoch from "
        f"{len(source.reader)} images, {len(val)} validation patches; task {task['kind']}; "
        f"devices used {used}"
    )
    if resume.after_epoch:
        log(f"resuming after epoch {resume.after_epoch} from {resume.state}")

    batches = Batches(
        source,
        settings["batch_size"],
        settings["seed"],
        settings["augment"],
        resume.after_epoch,
        drop_remainder=len(used) > 1,
        steps=settings.get("steps_per_epoch"),
        task=task,
    )
    validation = Validation(core, val_in, val_target, settings["loss"], task, resume.best())
    clock = Clock(
        batches.patches_per_epoch,
        settings.get("max_minutes"),
        validation,
        resume.meta.get("seconds", 0.0),
        resume.after_epoch,
    )
    board = tensorboard(Path(out_model).parent / "tensorboard", resume.after_epoch, log)
    callbacks = _callbacks(settings, resume, clock, validation, len(batches), board)
    try:
        wall = fit(trainer, batches, settings, callbacks, resume.after_epoch)
    except TesseraError:
        # a diverged run: nothing of it is worth resuming from
        _remove(resume.folder)
        raise
    if clock.stopped_at:
        log(f"stopped after epoch {clock.stopped_at}: the next would overrun train.max_minutes")

    weight_copies = backend.copies(core.trainable_variables[0])
    core = _on_one_device(core, settings, task, used)
    table = _history_table(next(c for c in callbacks if isinstance(c, Backup)).rows)
    kept = _keep(core, settings, validation, len(table), log)
    figures, flags = quality_flags(core, val_in, val_target, settings["loss"], task)
    for flag in flags:
        log(f"warning: {flag}")
    with atomic(out_model) as tmp:
        core.save(tmp)
    write_tsv(table.assign(epoch=table.epoch + 1), out_history)
    summary = {
        **({"preset": spec["preset"]} if "preset" in spec else {}),
        "model": spec,
        "network": models.label(spec),
        "init": spec.get("init"),
        **info,
        "task": task,
        "backend": keras.config.backend(),
        "device": ", ".join(used),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu": backend.cpu(),
        "replicas": len(used),
        "weight_copies": weight_copies,
        "precision": policy,
        "precision_reason": why,
        "epochs": int(len(table)),
        "kept_epoch": kept,
        "resumed_from_epoch": resume.after_epoch,
        "stopped_by_budget": clock.stopped_at is not None,
        "sampling": data.get("sampling", "grid"),
        "train_images": len(source.reader),
        "train_patches": len(source),
        "patches_per_epoch": batches.patches_per_epoch,
        "val_patches": int(len(val)),
        "patches_per_s": clock.patches_per_s(),
        "wall_s": round(wall, 1),
        "train_s": round(clock.elapsed(), 1),
        "started_at": round(started_at, 3),
        "ended_at": round(time.time(), 3),
        "final_loss": float(table["loss"].iloc[-1]),
        "final_val_loss": float(table["val_loss"].iloc[-1]),
        "kept_val_loss": float(table["val_loss"].iloc[kept - 1]),
        **figures,
        "flags": flags,
        "settings": settings,
        "versions": backend.versions(),
    }
    # Written last: Snakemake counts the job done only with all three outputs, and until the
    # backups are gone a rerun resumes after the last epoch and writes them again.
    write_json(out_summary, summary)
    _remove(resume.folder)
    return summary


def _set_up(settings, threads, log):
    """The job's threads, its devices checked, the precision policy and the random seed; returns
    the policy and why it was chosen."""
    backend.configure(threads)
    check_gpu(settings, log)
    policy, why = backend.precision(settings.get("precision", "float32"))
    keras.config.set_dtype_policy(policy)
    log(f"precision {policy}: {why}")
    keras.utils.set_random_seed(settings["seed"])
    return policy, why


def _keep(core, settings, validation, epochs, log):
    """Give core the weights to save: the best validation epoch's (train.keep best), or the last
    epoch's (with train.ema, fit has left the moving averages in the model). Returns the epoch."""
    if settings.get("keep", "best") == "best" and validation.best is not None:
        epoch, loss, weights = validation.best
        if epoch != epochs:
            core.set_weights(weights)
            log(f"keeping the weights of epoch {epoch}, the lowest validation loss ({loss:.6f})")
        return epoch
    return epochs


WEIGHTS, HISTORY, STATE = "backup.weights.h5", "history.tsv", "state.json"
BEST = "best.npz"  # the best epoch's weights, as the arrays of core.get_weights()


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save_state(folder, model, rows, keep, seconds=0.0, best=None):
    """Write the weights, the history, the best epoch's weights and a state.json with their
    checksums, the training seconds spent and the best epoch, into a hidden folder, each file
    flushed to disk, then rename it to epoch-NNNNNN: one atomic step. Older backups beyond keep
    are removed."""
    final = folder / f"epoch-{len(rows):06d}"
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save_weights(str(tmp / WEIGHTS))
        _history_table(rows).to_csv(tmp / HISTORY, sep="\t", index=False)
        state = {"epoch": len(rows), "seconds": seconds}
        files = [WEIGHTS, HISTORY]
        if best is not None:
            with open(tmp / BEST, "wb") as f:
                np.savez(f, **{f"w{k}": w for k, w in enumerate(best[2])})
            state.update(best_epoch=best[0], best_val_loss=best[1])
            files.append(BEST)
        state.update({name: _sha256(tmp / name) for name in files})
        (tmp / STATE).write_text(json.dumps(state))
        for name in [*files, STATE]:
            fsync(tmp / name)
        fsync(tmp)
        shutil.rmtree(final, ignore_errors=True)  # only after a damaged backup was passed over
        os.replace(tmp, final)
        fsync(folder)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if named := naming(e, final, tmp, *(tmp / n for n in (WEIGHTS, HISTORY, BEST, STATE))):
            raise named from e
        raise
    for old in sorted(folder.glob("epoch-*"))[:-keep]:
        _remove(old)
    for stale in folder.glob(".epoch-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _remove(path):
    """Remove a folder, renamed out of sight first: a kill during the removal leaves no half
    backup under a name a later run would read (only a hidden leftover, removed then)."""
    path = Path(path)
    gone = path.with_name(f".{path.name}.{os.getpid()}.old.tmp")
    try:
        os.replace(path, gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


def _restorable(state):
    """(history rows, state.json, None) if the backup folder is whole and consistent, else
    (None, None, reason)."""
    import pandas as pd

    try:
        meta = json.loads((state / STATE).read_text())
        epoch = int(meta["epoch"])
    except FileNotFoundError:
        return None, None, f"no {STATE}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, None, f"unreadable {STATE}: {type(e).__name__}: {e}"
    for name in (WEIGHTS, HISTORY, *([BEST] if BEST in meta else [])):
        try:
            if _sha256(state / name) != meta.get(name):
                return None, None, f"{name} does not match its checksum"
        except OSError as e:
            return None, None, f"{name}: {e.strerror or e}"
    rows = pd.read_csv(state / HISTORY, sep="\t").to_dict("records")
    if epoch < 1 or [r["epoch"] for r in rows] != list(range(epoch)):
        return None, None, f"its history does not reach epoch {epoch}"
    return rows, meta, None


def _history_table(rows):
    import pandas as pd

    return pd.DataFrame(rows)
