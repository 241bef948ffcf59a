"""The figures behind the receptive-radius probe's tolerance (tessera.models.PROBE_RTOL).

For each preset: the radius read from its layers, the radius the impulse probe measures, the
largest change an impulse makes at exactly that distance (the response the probe must see), and
the largest change beyond it (kernel rounding: 0 where this CPU's kernels give bit-identical
outputs), each as a share of the output's scale, which is what the tolerance is compared with.

    python bench/radius.py [--presets compact dncnn seed]
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tessera import backend, models  # noqa: E402


def responses(model, radius, size=64, trials=3):
    """(largest change at the radius, largest change beyond it), relative to the output scale."""
    m = models.geometry(model).multiple
    c = size // 2
    base = np.random.default_rng(0).random((trials, size, size, 3), dtype=np.float32)
    out_base = np.asarray(model.predict_on_batch(base))
    scale = float(np.abs(out_base).max())
    ys, xs = np.mgrid[0:size, 0:size]
    edge, beyond = 0.0, 0.0
    for t in range(trials):
        for dy in range(m):
            for dx in range(m):
                probe = base[t : t + 1].copy()
                probe[0, c + dy, c + dx] += 1.0
                change = np.abs(np.asarray(model.predict_on_batch(probe))[0] - out_base[t])
                change = change.max(axis=2) / scale
                dist = np.maximum(np.abs(ys - c - dy), np.abs(xs - c - dx))
                edge = max(edge, float(change[dist == radius].max()))
                beyond = max(beyond, float(change[dist > radius].max()))
    return edge, beyond


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=sorted(models.PRESETS))
    args = ap.parse_args()
    cpu = backend.cpu()
    print(
        f"CPU: {cpu['model']} [{' '.join(cpu['flags']) or 'no AVX2'}]; tolerance {models.PROBE_RTOL:g}"
    )
    print(f"{'preset':8} {'layers':>6} {'probe':>6} {'at radius':>13} {'beyond':>13}")
    import keras

    for name in args.presets:
        keras.utils.set_random_seed(0)  # the same starting weights as a training with seed 0
        model = models.build(name)
        radius = models.layer_radius(model)
        edge, beyond = responses(model, radius)
        print(f"{name:8} {radius:6d} {models.probe_radius(model):6d} {edge:13.2e} {beyond:13.2e}")


if __name__ == "__main__":
    main()
