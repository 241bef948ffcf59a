"""Memory and disk as the folder grows: the split and the training job on 100, 500 and 2,000
images, and how long `snakemake -n` takes on 10,000.

For each size, a synthetic folder of 512x512 photos-like JPEGs is generated (not shipped), their
patches are cut in this process with the patches stage's own function (tessera.patches.run;
thousands of one-image jobs would only measure Snakemake's start-up), then the workflow runs the
split and one short training epoch (train.steps_per_epoch) for real. The peak resident memory of
each job is sampled every 20 ms from its process tree (psutil).

    python bench/scale.py [--sizes 100 500 2000] [--steps 20] [--plan 10000]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from tessera import backend, images, patches  # noqa: E402

PATCHES = {"size": 32, "stride": 16, "max_per_image": 200, "seed": 0, "sampling": "grid"}


def make_photos(folder, n, side=512):
    """Smooth colour fields with fine noise: each image different, cheap to make."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(small).resize((side, side), Image.BICUBIC), np.float32)
        big += rng.normal(0, 12, big.shape)
        Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(
            folder / f"IMG_{i:05d}.jpg", quality=90
        )


def cut_patches(folder, results):
    for found in images.discover(folder):
        out = results / "patches" / found.image_id
        patches.run(
            folder / found.path, found.image_id, f"{out}.npy", f"{out}.json",
            PATCHES["size"], PATCHES["stride"], PATCHES["max_per_image"], PATCHES["seed"],
        )  # fmt: skip


STAGES = {"split": ".split.py", "train": ".train.py"}


class PeakMemory:
    """Peak resident memory of each stage's job, over the whole process tree of a command."""

    def __init__(self, pid):
        self.root, self.peaks, self.done = psutil.Process(pid), dict.fromkeys(STAGES, 0), False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.done:
            try:
                children = self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for proc in children:
                try:
                    cmdline = " ".join(proc.cmdline())
                    for stage, mark in STAGES.items():
                        if mark in cmdline:
                            rss = proc.memory_info().rss
                            rss += sum(c.memory_info().rss for c in proc.children(recursive=True))
                            self.peaks[stage] = max(self.peaks[stage], rss)
                except psutil.Error:
                    continue
            time.sleep(0.02)

    def stop(self):
        self.done = True
        self.thread.join()
        return self.peaks


def disk(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def run_size(n, steps, tmp):
    work = tmp / f"work{n}"
    folder = tmp / f"photos{n}"
    make_photos(folder, n)
    cut_patches(folder, work / "results")
    config = {
        "images": str(folder),
        "patches": PATCHES,
        "split": {"val_fraction": 0.2, "seed": 0, "max_val_patches": 2048},
        "train": {"epochs": 1, "steps_per_epoch": steps, "max_minutes": None, "threads": 2},
    }
    (work / "scale.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable, "-m", "snakemake", "results/model/model.keras", "-s", str(REPO / "Snakefile"),
        "-d", str(work), "--cores", "2", "--configfile", str(work / "scale.yaml"),
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = PeakMemory(proc.pid)
    out, _ = proc.communicate()
    peaks = watch.stop()
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"the workflow failed on {n} images:\n{out[-4000:]}")
    if "rule patches" in out:
        sys.exit("the workflow cut patches again: the timing would include them")
    count = sum(
        np.load(p, mmap_mode="r").shape[0] for p in (work / "results" / "patches").glob("*.npy")
    )
    row = (
        n,
        count,
        peaks["split"] / 2**20,
        peaks["train"] / 2**20,
        disk(work / "results") / 2**20,
        wall,
    )
    shutil.rmtree(work)
    shutil.rmtree(folder)
    return row


def plan_time(n, tmp):
    from discovery import make_folder

    folder = tmp / "plan"
    folder.mkdir()
    make_folder(folder, n)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp / "planwork"),
        "--configfile", str(REPO / "config" / "config.yaml"), "--config", f"images={folder}", "-n",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"snakemake -n failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    ap.add_argument("--steps", type=int, default=20, help="train.steps_per_epoch")
    ap.add_argument("--plan", type=int, default=10000, help="images for the snakemake -n timing")
    args = ap.parse_args()
    cpu = backend.cpu()
    print(f"CPU: {cpu['model']} [{' '.join(cpu['flags'])}], {os.cpu_count()} cores")
    print(f"patches: {PATCHES}; one epoch of {args.steps} batches of 64")
    print(
        f"{'images':>7} {'patches':>9} {'split MB':>9} {'train MB':>9} {'disk MB':>9} {'wall s':>7}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            rows.append(run_size(n, args.steps, tmp))
            print("%7d %9d %9.0f %9.0f %9.0f %7.1f" % rows[-1], flush=True)
        first, last = rows[0], rows[-1]
        print(
            f"training peak at {last[0]} images / at {first[0]}: {last[3] / first[3]:.3f}; "
            f"split: {last[2] / first[2]:.3f}"
        )
        if args.plan:
            seconds = plan_time(args.plan, tmp)
            print(f"snakemake -n on {args.plan} images: {seconds:.1f} s")


if __name__ == "__main__":
    main()
