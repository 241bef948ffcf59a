"""Training patches/s of tessera's own data path against a bare model.fit on in-memory arrays.

The bare fit (no augmentation, arrays already float) is the ceiling Keras gives; tessera's figure
includes reading uint8 patches from per-image files, shuffling, and the conversion to float,
flips/turns (and noise in denoise mode) inside the training step. --pipeline-only measures the
host side alone: batches produced per second, no model.

    python bench/train_speed.py [--presets compact seed] [--epochs 3] [--batch 64]
                                [--patches 4096] [--precision float32|mixed_bfloat16|auto]
                                [--task reconstruct|denoise|restore-jpeg|...] [--pipeline-only]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tessera import backend, models, patches  # noqa: E402
from tessera.batches import Batches, NpyFiles, PairedLoss, Patches, Trainer  # noqa: E402
from tessera.images import load_image  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "sample_images"
TASKS = {
    "reconstruct": {"kind": "reconstruct"},
    "denoise": {"kind": "denoise", "noise": "gaussian", "sigma": 25, "rate": 0.1, "seed": 0},
    # restore damages the patches on the host: what --pipeline-only measures
    "restore-jpeg": {"kind": "restore", "degradations": [{"kind": "jpeg", "quality": [10, 30]}]},
    "restore-holes": {
        "kind": "restore",
        "degradations": [{"kind": "holes", "size": [2, 6], "count": [1, 2]}],
    },
    "restore-chain": {
        "kind": "restore",
        "degradations": [
            {"kind": "blur", "sigma": [0.5, 2]},
            {"kind": "downscale", "factor": [2, 4]},
            {"kind": "noise", "sigma": [5, 50]},
            {"kind": "jpeg", "quality": [10, 30]},
        ],
    },
}


def patch_files(folder, size, n):
    """n patches of the sample photos in per-image files, as the patches stage writes them."""
    photos = sorted(SAMPLES.glob("*.[pj][pn]g"))
    cut = [
        patches.extract(load_image(p)[0], size, size // 2, max_patches=n, seed=0) for p in photos
    ]
    every = np.concatenate(cut)
    chosen = np.array_split(
        every[np.random.default_rng(0).permutation(len(every))[:n]], len(photos)
    )
    files = []
    for photo, part in zip(photos, chosen):
        files.append(folder / f"{photo.name}.npy")
        np.save(files[-1], part)
    return files


def machine():
    cpu = backend.cpu()
    return f"{cpu['model']} [{' '.join(cpu['flags']) or 'no AVX2'}]"


def pipeline_only(source, args):
    """Batches per second of the host side alone, over whole epochs."""
    data = Batches(source, args.batch, seed=0, augment_on=True, task=TASKS[args.task])
    count, started = 0, time.perf_counter()
    for _ in range(args.epochs):
        for i in range(len(data)):
            count += len(data[i][0][0])
        data.on_epoch_end()
    return count / (time.perf_counter() - started)


def _run(model, x, args, y=None):
    import keras

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, e, logs=None):
            times.append(time.perf_counter() - self.t)

    kw = {"batch_size": args.batch, "y": y} if y is not None else {}
    model.fit(x, epochs=args.epochs, verbose=0, callbacks=[Timer()], **kw)
    # the first epoch pays for tracing: the steady rate
    return args.patches * (len(times) - 1) / sum(times[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["compact", "seed"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--task", choices=sorted(TASKS), default="reconstruct")
    ap.add_argument(
        "--precision", default="float32", help="a Keras dtype policy, or auto as train.precision"
    )
    ap.add_argument("--pipeline-only", action="store_true", help="the host side alone, no model")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, the best one kept")
    args = ap.parse_args()
    import keras

    backend.configure(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        files = patch_files(Path(tmp), 32, args.patches)
        source = Patches(NpyFiles(files))
        if args.pipeline_only:
            rate = pipeline_only(source, args)
            print(
                f"host pipeline: {rate:,.0f} patches/s of 32x32 ({len(source)} patches in "
                f"{len(files)} files, batch {args.batch}, {args.epochs} epochs); CPU: {machine()}, "
                f"{args.threads} threads"
            )
            return
        policy, why = backend.precision(args.precision)
        keras.config.set_dtype_policy(policy)
        data = source.take(np.arange(len(source)))
        print(
            f"{keras.config.backend()} on {backend.devices()}, {len(data)} patches of 32x32, "
            f"batch {args.batch}, task {args.task}, {policy} ({why})\nCPU: {machine()}"
        )
        print(f"{'preset':10} {'bare fit':>12} {'tessera':>12} {'ratio':>7}  {'precision':15} cpu")
        for name in args.presets:
            # each run twice, alternating, the best of each kept: this machine's speed drifts
            rates = {"bare": 0.0, "tessera": 0.0}
            for _ in range(args.rounds):
                keras.utils.set_random_seed(0)
                bare = models.build(name)
                bare.compile(optimizer="adam", loss="mse")
                x = data.astype(np.float32) / 255
                rates["bare"] = max(rates["bare"], _run(bare, x, args, y=x))
                keras.utils.set_random_seed(0)
                trainer = Trainer(models.build(name), 32, TASKS[args.task], seed=0)
                trainer.compile(optimizer="adam", loss=PairedLoss())
                batches = Batches(
                    Patches(NpyFiles(files)), args.batch, 0, True, task=TASKS[args.task]
                )
                rates["tessera"] = max(rates["tessera"], _run(trainer, batches, args))
            print(
                f"{name:10} {rates['bare']:12.0f} {rates['tessera']:12.0f} "
                f"{rates['tessera'] / rates['bare']:7.3f}  {policy:15} {machine()}"
            )


if __name__ == "__main__":
    main()
