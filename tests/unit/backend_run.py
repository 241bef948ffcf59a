"""Train and tile with whatever KERAS_BACKEND names; run as a script by test_backends.py.

python tests/unit/backend_run.py OUT_DIR [gpus] [virtual_cpus]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

out = Path(sys.argv[1])
gpus = int(sys.argv[2]) if len(sys.argv) > 2 else 1
virtual = int(sys.argv[3]) if len(sys.argv) > 3 else 0
optimizer = sys.argv[4] if len(sys.argv) > 4 else "adam"
if virtual:
    import keras

    if keras.config.backend() == "tensorflow":
        # Logical CPU devices stand in for GPUs; they must exist before TensorFlow starts.
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * virtual
        )

import numpy as np  # noqa: E402

from tessera import train  # noqa: E402
from tessera import reconstruct as rec  # noqa: E402
from tests.conftest import DATA, patch_dataset, sample  # noqa: E402
from tests.reference import whole_image  # noqa: E402

out.mkdir(parents=True, exist_ok=True)
split_tsv, files = patch_dataset(out / "patches", max_patches=256)
settings = dict(
    preset="compact", epochs=2, batch_size=32, optimizer=optimizer, learning_rate=0.002 if optimizer == "adam" else 0.05, loss="mse",
    augment=True, seed=0, max_minutes=None, threads=2, gpus=gpus,
)  # fmt: skip
summary = train.train(
    split_tsv, files, out / "model.keras", out / "history.tsv", out / "summary.json",
    out / "resume", settings, DATA, threads=2,
)  # fmt: skip
model, _ = rec.load(out / "model.keras", out / "summary.json")
image = sample("rocket.jpg", (200, 100, 301, 170))
plan = rec.plan_for(image, summary, 32, None, "crop")
tiled = rec.reconstruct(model, image, plan, batch_size=4)
exact = float(np.abs(tiled - whole_image(model, image, plan)).max())
first = float((out / "history.tsv").read_text().splitlines()[1].split("\t")[1])
print(
    json.dumps(
        {
            **summary,
            "history_first_loss": first,
            "tiled_shape": list(tiled.shape),
            "tiling_error": exact,
        }
    )
)
