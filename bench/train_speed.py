"""Training patches/s of tessera's own data pipeline against a bare model.fit on in-memory arrays.

The bare fit (no augmentation, arrays already float) is the ceiling Keras gives; tessera's figure
includes uint8 -> float conversion, shuffling and flip/turn augmentation on the fly.

    python bench/train_speed.py [--presets compact seed] [--epochs 3] [--batch 64]
                                [--precision mixed_bfloat16]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tessera import backend, models, patches  # noqa: E402
from tessera.batches import Batches  # noqa: E402
from tessera.images import load_image  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "sample_images"


def dataset(size, n):
    parts = [
        patches.extract(load_image(p)[0], size, size // 2, max_patches=n // 4, seed=0)
        for p in sorted(SAMPLES.glob("*.[pj][pn]g"))
    ]
    return np.concatenate(parts)[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["compact", "seed"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--precision", default="float32", help="a Keras dtype policy, or auto as train.precision"
    )
    args = ap.parse_args()
    import keras

    backend.configure(args.threads)
    policy, why = backend.precision(args.precision)
    keras.config.set_dtype_policy(policy)
    data = dataset(32, args.patches)
    cpu = backend.cpu()
    machine = f"{cpu['model']} [{' '.join(cpu['flags']) or 'no AVX2'}]"
    print(
        f"{keras.config.backend()} on {backend.devices()}, {len(data)} patches of 32x32, "
        f"batch {args.batch}, {policy} ({why})\nCPU: {machine}"
    )
    print(f"{'preset':10} {'bare fit':>12} {'tessera':>12} {'ratio':>7}  {'precision':15} cpu")
    for name in args.presets:
        rates = {}
        for kind in ("bare", "tessera"):
            keras.utils.set_random_seed(0)
            model = models.build(name)
            model.compile(optimizer="adam", loss="mse")
            if kind == "bare":
                x = data.astype(np.float32) / 255
                rate = _bare(model, x, args)
            else:
                batches = Batches(data, args.batch, seed=0, augment_on=True)
                rate = _run(model, batches, args, None)
            rates[kind] = rate
        print(
            f"{name:10} {rates['bare']:12.0f} {rates['tessera']:12.0f} "
            f"{rates['tessera'] / rates['bare']:7.3f}  {policy:15} {machine}"
        )


def _bare(model, x, args):
    return _run(model, x, args, x)


def _run(model, x, args, y):
    import keras

    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, e, logs=None):
            times.append(time.perf_counter() - self.t)

    kw = {"batch_size": args.batch, "y": y} if y is not None else {}
    model.fit(x, epochs=args.epochs, verbose=0, callbacks=[T()], **kw)
    return args.patches * (len(times) - 1) / sum(times[1:])


if __name__ == "__main__":
    main()
