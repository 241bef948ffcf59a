"""Which fill of a hole wins where: PSNR inside the holes (dB) of each photo, with the holes of
config/inpaint.yaml placed as a reconstruction places them, for the harmonic fill (the mean of
the edge, smoothed: what models saved before the biharmonic steps start from), the fill a
network told the holes starts from now (tessera.models.BIHARMONIC_STEPS steps towards
biharmonic), and biharmonic inpainting solved exactly (scikit-image), the baseline.

    python bench/fills.py [--folder resources/photos]
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from tessera import images, models, tasks  # noqa: E402
from tessera.measure import to_uint8  # noqa: E402
from tessera.tasks.restore import inpaint_biharmonic  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "resources" / "photos")
    args = parser.parse_args()
    task = yaml.safe_load((ROOT / "config" / "inpaint.yaml").read_text())["task"]
    task = {"seed": 0, **task}
    _, fill_holes, _ = models.mask_layers()
    harmonic, near = fill_holes(128, 0), fill_holes(128, models.BIHARMONIC_STEPS)
    rows = []
    for found in images.discover(args.folder):
        if found.reason is not None:
            continue
        path = args.folder / found.path
        clean, _ = images.load_image(path)
        given, extra = tasks.get(task).fixed(clean, task, path.name)
        x = given[None].astype(np.float32) / 255

        def inside(filled):
            return tasks.psnr_inside(clean, to_uint8(np.array(filled, np.float32)), extra["holes"])

        exact = inside(inpaint_biharmonic(given, None, extra) / 255)
        rows.append(
            {
                "photo": path.name,
                "harmonic": inside(np.asarray(harmonic(x))[0]),
                f"{models.BIHARMONIC_STEPS} steps": inside(np.asarray(near(x))[0]),
                "biharmonic": exact,
            }
        )
    table = pd.DataFrame(rows).set_index("photo")
    table.loc["mean"] = table.mean()
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
