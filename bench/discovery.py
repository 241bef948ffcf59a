"""How long Snakemake takes to plan a run (`snakemake -n`) on a folder of many images.

Images are listed at parse time without being decoded (tessera.images.discover), so planning
should take seconds even for a large folder; the decoding happens in the patch jobs. With
--apply, the folder is the one `snakemake apply` runs the model over (the sample images train).

    python bench/discovery.py [--images 1000] [--repeat 3] [--apply]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tessera import images  # noqa: E402


def make_folder(folder, n):
    """n small photos-like images (noise over a gradient), a tenth of them in subfolders."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 200, 64 * 48 * 3).reshape(48, 64, 3)
    for i in range(n):
        sub = folder / f"set {i % 10}" if i % 10 == 0 else folder
        sub.mkdir(exist_ok=True)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(sub / f"IMG_{i:04d}.jpg", quality=80)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--apply", action="store_true", help="plan `snakemake apply` on the folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        make_folder(folder, args.images)

        started = time.perf_counter()
        found = images.discover(folder)
        listing = time.perf_counter() - started
        assert sum(1 for f in found if f.image_id) == args.images

        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp / "work"),
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            "-n",
        ]
        if args.apply:
            samples = REPO / "resources" / "sample_images"
            apply = f"apply={{images: '{folder}'}}"
            cmd = [*cmd[:3], "apply", *cmd[3:], "--config", f"images={samples}", apply]
        else:
            cmd += ["all", "--config", f"images={folder}"]
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if proc.returncode != 0:
                sys.exit(f"snakemake -n failed:\n{proc.stderr[-3000:]}")
        jobs = next(ln.split()[-1] for ln in proc.stdout.splitlines() if ln.startswith("total"))

    what = "snakemake apply -n" if args.apply else "snakemake -n"
    print(f"images: {args.images} (JPEG, 64x48)")
    print(f"listing them (tessera.images.discover): {listing:.3f} s")
    print(
        f"{what} ({jobs} jobs planned before the checkpoints): "
        f"median {statistics.median(times):.2f} s, best {min(times):.2f} s of {args.repeat}"
    )


if __name__ == "__main__":
    main()
